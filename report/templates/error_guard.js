/* Runs first: records every JavaScript error, failed resource and console.error into the
 * data-js-errors attribute of <html> (a JSON list), so a headless browser test can read them
 * back from the DOM. Nothing here changes what the reader sees. */
(function () {
  "use strict";
  var root = document.documentElement, errors = [];
  function record(message) {
    errors.push(String(message));
    root.setAttribute("data-js-errors", JSON.stringify(errors));
  }
  root.setAttribute("data-js-errors", "[]");
  window.addEventListener("error", function (event) {
    var el = event.target;
    if (el && el !== window && el.tagName) { // a resource (image) that failed to load
      record("failed to load <" + el.tagName.toLowerCase() + "> " + (el.getAttribute("data-figure") || el.id || ""));
      return;
    }
    record((event.message || "error") + " (line " + (event.lineno || "?") + ")");
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    var r = event.reason;
    record("unhandled rejection: " + (r && r.message ? r.message : r));
  });
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.tmsRecordError = record;
})();
