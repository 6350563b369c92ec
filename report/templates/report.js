/* The report page: a filterable, sortable claims table, figures that open at full size, and checks
 * read by the browser tests from attributes of <html>: every figure loaded (data-figures-ok,
 * data-figure-problems), the page fits the window (data-scroll-width, data-viewport-width,
 * data-claims-fit), and nothing was fetched from the network (data-resources). */
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

  // ---- figures open at full size (an overlay: a data: URL cannot be opened as a page of its own)
  var box = document.getElementById("lightbox");
  if (box) {
    var big = box.querySelector("img");
    var close = function () { box.hidden = true; big.removeAttribute("src"); };
    Array.prototype.forEach.call(document.querySelectorAll("a.zoom"), function (a) {
      a.addEventListener("click", function (event) {
        var img = a.querySelector("img");
        if (!img) return;
        event.preventDefault();
        big.src = img.src;
        big.alt = img.alt;
        big.style.width = (img.naturalWidth / (window.devicePixelRatio || 1)) + "px";
        box.hidden = false;
      });
    });
    box.addEventListener("click", close);
    document.addEventListener("keydown", function (event) { if (event.key === "Escape") close(); });
  }

  // ---- layout: does the page (and the claims table) fit the window without horizontal scrolling?
  function checkLayout() {
    var doc = document.scrollingElement || document.documentElement;
    root.setAttribute("data-scroll-width", String(doc.scrollWidth));
    root.setAttribute("data-viewport-width", String(window.innerWidth));
    if (table) {
      var r = table.getBoundingClientRect();
      var fits = table.scrollWidth <= table.clientWidth + 1 && r.right <= window.innerWidth + 0.5 && r.left >= -0.5;
      root.setAttribute("data-claims-fit", fits ? "1" : "0");
      root.setAttribute("data-claims-width", String(Math.round(Math.max(r.width, table.scrollWidth))));
    }
    var names = [];
    if (window.performance && performance.getEntriesByType) {
      performance.getEntriesByType("resource").forEach(function (e) { names.push(e.name); });
    }
    root.setAttribute("data-resources", JSON.stringify(names));
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
    checkLayout();
    root.setAttribute("data-checks-done", "1");
  }
  if (document.readyState === "complete") checkFigures();
  else window.addEventListener("load", checkFigures);
  window.addEventListener("resize", checkLayout);
})();
