// Launcher: the few lines of JavaScript htmx does not cover. Everything works without it.
