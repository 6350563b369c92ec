/* The report page: a filterable, sortable claims table, and a check that every figure loaded
 * (results in data-figures-ok / data-figure-problems on <html>, read by the browser test). */
(function () {
  "use strict";
  var root = document.documentElement;

  // ---- claims table: text filter, verdict filter, click a header to sort
  var table = document.getElementById("claims-table");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var text = document.getElementById("claims-filter");
    var verdict = document.getElementById("claims-verdict");
    var shown = document.getElementById("claims-shown");
    var filter = function () {
      var q = text.value.trim().toLowerCase(), v = verdict.value, n = 0;
      rows.forEach(function (row) {
        var ok = (!q || row.textContent.toLowerCase().indexOf(q) >= 0) && (!v || row.dataset.verdict === v);
        row.hidden = !ok;
        if (ok) n += 1;
      });
      shown.textContent = String(n);
    };
    text.addEventListener("input", filter);
    verdict.addEventListener("change", filter);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var key = function (row) { return row.cells[col].dataset.sort || row.cells[col].textContent.trim(); };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b), nx = Number(x), ny = Number(y);
          var numeric = x !== "" && y !== "" && isFinite(nx) && isFinite(ny);
          var c = numeric ? nx - ny : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
    filter();
  }

  // ---- every figure present and decoded
  function checkFigures() {
    var expected = +(document.body.getAttribute("data-expected-figures") || 0);
    var imgs = document.querySelectorAll("img.figure-img"), problems = [], ok = 0;
    Array.prototype.forEach.call(imgs, function (img) {
      if (img.complete && img.naturalWidth > 0) ok += 1;
      else problems.push("figure " + img.getAttribute("data-figure") + " did not load");
    });
    if (imgs.length !== expected) problems.push(imgs.length + " figure images on the page, expected " + expected);
    root.setAttribute("data-figures-ok", ok + "/" + expected);
    root.setAttribute("data-figure-problems", JSON.stringify(problems));
    root.setAttribute("data-checks-done", "1");
  }
  if (document.readyState === "complete") checkFigures();
  else window.addEventListener("load", checkFigures);
})();
