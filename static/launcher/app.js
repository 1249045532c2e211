// Launcher: the few lines of JavaScript htmx does not cover. Everything works without it.

// Launch page: the "Choose"/"Preview" buttons are for browsers without JavaScript; with it,
// htmx re-renders the form when Workflow or Prompt change.
document.documentElement.classList.add("js");

// Launch and new batch pages: choosing a workflow or a prompt re-renders a region
// (#launch-details, #batch-details) from the server. A person (or a test) may change a
// control while that request is in flight; the swap must not undo it. So: note the values when
// the request leaves, and after the swap put back every value that changed in the meantime
// (when the new form still has that control and option).
(function () {
  var stale = []; // controls whose own refresh was lost in a swap

  var REGIONS = ["launch-details", "batch-details"];

  function keepsTyped(el) {
    return Boolean(el) && REGIONS.indexOf(el.id) !== -1;
  }

  function snapshot(root) {
    var values = {};
    if (!root) return values;
    root.querySelectorAll("input[name], select[name], textarea[name]").forEach(function (el) {
      if (el.type === "file" || el.type === "hidden" || el.type === "submit") return;
      values[el.name] = el.type === "checkbox" ? String(el.checked) : el.value;
    });
    return values;
  }

  // The snapshot travels with its own request, so overlapping requests do not mix them up.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (keepsTyped(target)) event.detail.xhr.launcherSent = snapshot(target);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var sent = event.detail.xhr && event.detail.xhr.launcherSent;
    if (!keepsTyped(target) || !sent) return;
    var now = snapshot(target);
    var changed = {};
    Object.keys(now).forEach(function (name) {
      if (now[name] !== sent[name]) changed[name] = now[name];
    });
    document.launcherPendingValues = changed;
    document.launcherPendingTarget = target.id;
  });

  document.addEventListener("htmx:afterSwap", function () {
    var changed = document.launcherPendingValues;
    var details = document.getElementById(document.launcherPendingTarget || "");
    document.launcherPendingValues = null;
    if (!changed || !details) return;
    details.querySelectorAll("input[name], select[name], textarea[name]").forEach(function (el) {
      if (!Object.prototype.hasOwnProperty.call(changed, el.name)) return;
      var value = changed[el.name];
      if (el.type === "checkbox") {
        el.checked = value === "true";
      } else if (el.tagName === "SELECT") {
        var exists = Array.prototype.some.call(el.options, function (option) {
          return option.value === value;
        });
        if (exists) el.value = value;
      } else if (el.type !== "file") {
        el.value = value;
      }
      // A Workflow or Prompt changed mid-flight: its own refresh went away with the old
      // control, so ask again (once htmx has wired the new one) for the matching form.
      if (el.hasAttribute("hx-post") && el.value === value) stale.push(el);
    });
  });

  document.addEventListener("htmx:afterSettle", function () {
    var controls = stale;
    stale = [];
    controls.forEach(function (el) {
      if (document.body.contains(el)) htmx.trigger(el, "change");
    });
  });
})();

// Times: the server writes UTC (<time datetime="…" data-local-time>); show them in the reader's
// own zone with how long ago, after every htmx swap too, and keep "… ago" fresh.
(function () {
  if (typeof Intl === "undefined" || !Intl.RelativeTimeFormat) return;
  // Today: the time only; this year: no year; else the full date.
  var formats = {
    today: new Intl.DateTimeFormat(undefined, { timeStyle: "short" }),
    year: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" }),
    full: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
  };
  var relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  var UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function ago(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    for (var i = 0; i < UNITS.length; i++) {
      if (Math.abs(seconds) >= UNITS[i][1]) {
        return relative.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
      }
    }
    return Math.abs(seconds) < 10 ? relative.format(0, "second") : relative.format(Math.round(seconds), "second");
  }

  function localize() {
    document.querySelectorAll("time[data-local-time]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      var now = new Date();
      var format = date.toDateString() === now.toDateString() ? formats.today
        : date.getFullYear() === now.getFullYear() ? formats.year : formats.full;
      var utc = date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
      // Compact (a table column): the moment only; how long ago goes to the tooltip.
      if (el.hasAttribute("data-compact")) {
        el.textContent = format.format(date);
        el.title = ago(date) + " · " + utc;
      } else {
        el.textContent = format.format(date) + " · " + ago(date);
        el.title = utc;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", localize);
  // afterSwap runs before the browser paints the new content: no flash of UTC text.
  document.addEventListener("htmx:afterSwap", localize);
  setInterval(localize, 30000);
})();

// Status changes, read out: a swap replaces the element that carried the news, and a screen
// reader only announces changes inside a live region that already existed. So each swapped-in
// [data-announce="Run 5"] element's text, when it changed, goes to base.html's #live-announcer.
(function () {
  var last = {};
  document.addEventListener("htmx:afterSwap", function () {
    var announcer = document.getElementById("live-announcer");
    if (!announcer) return;
    var news = [];
    document.querySelectorAll("[data-announce]").forEach(function (el) {
      var key = el.getAttribute("data-announce");
      var text = el.textContent.replace(/\s+/g, " ").trim();
      if (last[key] !== undefined && last[key] !== text) news.push(key + ": " + text);
      last[key] = text;
    });
    if (news.length) announcer.textContent = news.join(". ");
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-announce]").forEach(function (el) {
      last[el.getAttribute("data-announce")] = el.textContent.replace(/\s+/g, " ").trim();
    });
  });
})();

// Page-wide polls (the runs table, a batch's progress) carry data-poll-when-visible: while the
// tab is hidden their request is skipped, so nobody's background tab keeps the API busy. (An
// htmx trigger filter could say this, but it needs eval, which our CSP forbids.)
document.addEventListener("htmx:beforeRequest", function (event) {
  if (document.hidden && event.detail.elt.hasAttribute("data-poll-when-visible")) {
    event.preventDefault();
  }
});

// Confirmations (views/confirm.py): a button that leads to one fetches its form into base.html's
// <dialog id="confirm-dialog">, shown modal. "Keep …" closes it (without JavaScript it is a link
// back); sending it closes it once the answer is in. Closing gives focus back to the button
// that opened it, or, when the answer replaced that button, to [data-focus-after].
(function () {
  var opener = null;
  var focusAfter = "";

  function dialog() {
    return document.getElementById("confirm-dialog");
  }

  function close() {
    var box = dialog();
    if (box && box.open) box.close();
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var box = dialog();
    if (event.detail.target === box && !box.contains(event.detail.elt)) {
      opener = document.activeElement;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var box = dialog();
    if (event.detail.target !== box) return;
    var form = box.querySelector("form");
    focusAfter = form ? form.getAttribute("data-focus-after") || "" : "";
    if (!box.open) box.showModal();
    var first = box.querySelector("[autofocus]") || box.querySelector("button, a[href]");
    if (first) first.focus();
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#confirm-dialog [data-close-dialog]");
    if (!link) return;
    event.preventDefault();
    close();
  });

  // A confirmed action that answers with HX-Redirect (Retry: the whole run page changes) loads
  // a new page, where focus would start on <body>: note where it should go instead.
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    var box = dialog();
    var form = box && box.contains(event.detail.elt) ? box.querySelector("form") : null;
    var xhr = event.detail.xhr;
    if (!form || !xhr || !xhr.getResponseHeader("HX-Redirect")) return;
    try {
      sessionStorage.setItem("launcherFocusAfter", form.getAttribute("data-focus-after") || "");
    } catch (error) { /* storage off: focus starts at the top, as on any page */ }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var wanted = "";
    try {
      wanted = sessionStorage.getItem("launcherFocusAfter") || "";
      sessionStorage.removeItem("launcherFocusAfter");
    } catch (error) { return; }
    var target = null;
    wanted.split(",").forEach(function (selector) {
      if (!target && selector.trim()) target = document.querySelector(selector.trim());
    });
    if (target) target.focus();
  });

  // The confirmed action answered: its region is swapped (or the page redirects); close.
  document.addEventListener("htmx:afterRequest", function (event) {
    var box = dialog();
    if (box && box.contains(event.detail.elt) && event.detail.successful) close();
  });

  document.addEventListener("close", function (event) {
    if (event.target !== dialog()) return;
    dialog().innerHTML = "";
    var back = opener && document.body.contains(opener) ? opener : null;
    // data-focus-after is a list of selectors in order of preference.
    focusAfter.split(",").forEach(function (selector) {
      if (!back && selector.trim()) back = document.querySelector(selector.trim());
    });
    if (back) back.focus();
    opener = null;
  }, true);
})();

// Focus through swaps. A polled region is morphed (idiomorph keeps the element someone is on),
// but when the news removes that very control (a run finishes: Cancel gives way to Retry),
// focus would fall to <body>: move it to the region's first button, else its heading. And a
// form sent back with errors puts focus on its first bad field.
(function () {
  var focusedIn = null;

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var active = document.activeElement;
    focusedIn = target && active && active !== document.body && target.contains(active) ? target.id : null;
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    var region = target && target.id ? document.getElementById(target.id) : null;
    if (!region && focusedIn) region = document.getElementById(focusedIn);
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    var sentForm = elt && (elt.tagName === "FORM" || elt.tagName === "BUTTON") && !(region && region.id === "confirm-dialog");
    if (region && sentForm && event.detail.requestConfig.verb === "post") {
      var bad = region.querySelector("[aria-invalid='true'], .has-error input, .has-error select, .has-error textarea");
      if (bad) {
        bad.focus();
        focusedIn = null;
        return;
      }
    }
    var lost = document.activeElement === document.body || document.activeElement === null;
    if (focusedIn && lost && !(dialog() && dialog().open)) {
      var where = document.getElementById(focusedIn);
      var next = where && (where.querySelector(".actions button, button") || where.querySelector("h2[tabindex]") || where);
      if (next) {
        if (next === where && !where.hasAttribute("tabindex")) where.setAttribute("tabindex", "-1");
        next.focus();
      }
    }
    focusedIn = null;
  });

  function dialog() {
    return document.getElementById("confirm-dialog");
  }

  // Without htmx (a full page sent back with errors): the first bad field too.
  document.addEventListener("DOMContentLoaded", function () {
    var bad = document.querySelector("main [aria-invalid='true']");
    if (bad && !document.querySelector("main [autofocus]")) bad.focus();
  });
})();

// Runs list: a header checkbox [data-select-all="run"] ticks or clears every name="run" box in
// its table; it shows as ticked (or mixed) from the rows, also after a poll swapped them.
(function () {
  function boxes(all) {
    var table = all.closest("table");
    return table ? table.querySelectorAll('input[type="checkbox"][name="' + all.dataset.selectAll + '"]') : [];
  }
  function sync() {
    document.querySelectorAll("input[data-select-all]").forEach(function (all) {
      var rows = Array.prototype.slice.call(boxes(all));
      var ticked = rows.filter(function (box) { return box.checked; }).length;
      all.checked = rows.length > 0 && ticked === rows.length;
      all.indeterminate = ticked > 0 && ticked < rows.length;
    });
  }
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("input[data-select-all]")) {
      boxes(el).forEach(function (box) { box.checked = el.checked; });
    }
    sync();
  });
  document.addEventListener("htmx:afterSwap", sync);
})();
