// Launcher: the few lines of JavaScript htmx does not cover. Everything works without it.

// Launch page: the "Choose"/"Preview" buttons are for browsers without JavaScript; with it,
// htmx re-renders the form when Workflow or Prompt change.
document.documentElement.classList.add("js");
