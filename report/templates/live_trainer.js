/* Live toy model: x' = ReLU(W^T W x + b), n = 5 features in m = 2 dimensions, trained in the page.
 *
 * Plain JavaScript, no dependencies, no network. The core (random numbers, model, Adam) touches no
 * DOM, so it also runs under node (module.exports) and in a bare page (window.tmsLiveTrainer) for
 * tests. Training is deterministic: a seeded counter-based generator; "restart" reuses the seed (one
 * slider value, one picture) and "new seed" moves to the next one. Features are numbered 0-4 and
 * coloured as in the static figures (importance colours, from the section's data-colors).
 */
(function () {
  "use strict";

  // ---- random numbers: a counter hashed with a 32-bit finaliser (reproducible across browsers)
  function makeRng(seed) {
    var state = seed >>> 0;
    return function () {
      state = (state + 0x9e3779b9) >>> 0;
      var z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      z = (z ^ (z >>> 16)) >>> 0;
      return z / 4294967296; // [0, 1)
    };
  }

  function gaussian(rng) {
    var u = 1 - rng(); // (0, 1]: log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  }

  // ---- the model and its optimiser
  function ToyModel(opts) {
    this.n = opts.n || 5;
    this.m = opts.m || 2;
    this.density = Math.min(1, Math.max(1e-4, opts.density));
    this.lr = opts.lr || 5e-3;
    this.batch = opts.batch || 256;
    this.importance = opts.importance || [];
    while (this.importance.length < this.n) this.importance.push(1);
    this.rng = makeRng(opts.seed || 1);
    var n = this.n, m = this.m, size = m * n + n;
    this.W = new Float64Array(m * n); // W[k * n + i]: dimension k of feature i's column
    this.b = new Float64Array(n);
    var std = Math.sqrt(2 / (m + n)); // Xavier-normal, as in the paper's setup
    for (var p = 0; p < m * n; p++) this.W[p] = std * gaussian(this.rng);
    this.mom = new Float64Array(size);
    this.vel = new Float64Array(size);
    this.grad = new Float64Array(size);
    this.x = new Float64Array(n);
    this.h = new Float64Array(m);
    this.gPre = new Float64Array(n);
    this.wg = new Float64Array(m);
    this.t = 0;
  }

  /* One Adam step on a fresh batch; returns the batch loss (mean over the batch of sum_i I_i (x_i - x'_i)^2). */
  ToyModel.prototype.step = function () {
    var n = this.n, m = this.m, W = this.W, b = this.b, g = this.grad, x = this.x, h = this.h;
    var gPre = this.gPre, wg = this.wg, imp = this.importance, rng = this.rng, B = this.batch;
    var loss = 0, i, k, s;
    g.fill(0);
    for (s = 0; s < B; s++) {
      // sparse uniform features: x_i ~ U[0, 1] with probability density, else 0
      for (i = 0; i < n; i++) x[i] = rng() < this.density ? rng() : 0;
      for (k = 0; k < m; k++) {
        var a = 0;
        for (i = 0; i < n; i++) a += W[k * n + i] * x[i];
        h[k] = a;
      }
      for (i = 0; i < n; i++) {
        var pre = b[i];
        for (k = 0; k < m; k++) pre += W[k * n + i] * h[k];
        var diff = (pre > 0 ? pre : 0) - x[i];
        loss += imp[i] * diff * diff;
        gPre[i] = pre > 0 ? (2 * imp[i] * diff) / B : 0;
      }
      // W enters twice (h = W x, pre = W^T h): dL/dW[k,i] = h_k gPre_i + (W gPre)_k x_i
      for (k = 0; k < m; k++) {
        var c = 0;
        for (i = 0; i < n; i++) c += W[k * n + i] * gPre[i];
        wg[k] = c;
      }
      for (k = 0; k < m; k++) for (i = 0; i < n; i++) g[k * n + i] += h[k] * gPre[i] + wg[k] * x[i];
      for (i = 0; i < n; i++) g[m * n + i] += gPre[i];
    }
    this.t += 1;
    var b1 = 0.9, b2 = 0.999, c1 = 1 - Math.pow(b1, this.t), c2 = 1 - Math.pow(b2, this.t);
    for (var p = 0; p < g.length; p++) {
      this.mom[p] = b1 * this.mom[p] + (1 - b1) * g[p];
      this.vel[p] = b2 * this.vel[p] + (1 - b2) * g[p] * g[p];
      var upd = (this.lr * (this.mom[p] / c1)) / (Math.sqrt(this.vel[p] / c2) + 1e-8);
      if (p < m * n) W[p] -= upd;
      else b[p - m * n] -= upd;
    }
    return loss / B;
  };

  ToyModel.prototype.finite = function () {
    for (var p = 0; p < this.W.length; p++) if (!isFinite(this.W[p])) return false;
    for (var i = 0; i < this.b.length; i++) if (!isFinite(this.b[i])) return false;
    return true;
  };

  /* Feature i's column of W as {x, y, norm, angle (degrees)}. */
  ToyModel.prototype.columns = function () {
    var out = [];
    for (var i = 0; i < this.n; i++) {
      var px = this.W[i], py = this.m > 1 ? this.W[this.n + i] : 0;
      out.push({ x: px, y: py, norm: Math.sqrt(px * px + py * py), angle: (Math.atan2(py, px) * 180) / Math.PI });
    }
    return out;
  };

  /* A name for the geometry: which features are represented, and how they are arranged. */
  function describe(cols, threshold) {
    threshold = threshold || 0.5;
    var on = cols.filter(function (c) { return c.norm > threshold; });
    var k = on.length;
    if (k < 2) return { represented: k, shape: k === 1 ? "one feature" : "no features" };
    var angles = on.map(function (c) { return (c.angle + 360) % 360; }).sort(function (a, b) { return a - b; });
    var gaps = angles.map(function (a, j) { return (angles[(j + 1) % k] - a + 360) % 360 || 360; });
    var even = gaps.every(function (gap) { return Math.abs(gap - 360 / k) < 12; });
    var minGap = Math.min.apply(null, gaps);
    var names = { 2: "antipodal pair", 3: "triangle", 4: "square (two antipodal pairs)", 5: "regular pentagon" };
    var pairs = 0; // antipodal pairs: each the other's most opposite partner, cos < -0.9
    on.forEach(function (a, j) {
      var best = -1, bestCos = 2;
      on.forEach(function (b, l) {
        if (l === j) return;
        var c = (a.x * b.x + a.y * b.y) / (a.norm * b.norm);
        if (c < bestCos) { bestCos = c; best = l; }
      });
      if (best > j && bestCos < -0.9) pairs += 1;
    });
    var shape;
    if (even && names[k]) shape = names[k];
    else if (k === 2 && Math.abs(minGap - 90) < 12) shape = "2 orthogonal features";
    else shape = k + " features, smallest angle " + minGap.toFixed(0) + "\u00b0";
    return { represented: k, shape: shape, antipodal: pairs, minGap: minGap };
  }

  var api = { makeRng: makeRng, ToyModel: ToyModel, describe: describe };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  if (typeof window !== "undefined") window.tmsLiveTrainer = api;
  if (typeof document === "undefined") return;

  // ---- the page: slider, canvas, counters
  var panel = document.getElementById("live");
  if (!panel) return;
  var root = document.documentElement;
  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("live-canvas"), slider = $("live-sparsity"), impSelect = $("live-importance");
  var ctx = canvas.getContext("2d");
  var cfg = {
    steps: +panel.dataset.steps, batch: +panel.dataset.batch, lr: +panel.dataset.lr,
    seed: +panel.dataset.seed, perTick: +panel.dataset.stepsPerFrame,
  };
  // the static figures' importance colours (tms.figures.draw.importance_colors), feature 0 first
  var COLORS = (panel.dataset.colors || "#440154 #3b528b #21918c #5ec962 #bddf26").split(" ");
  var model = null, run = 0, step = 0, lossEma = NaN, note = "";

  function importanceVector() {
    var decay = +impSelect.value, out = [];
    for (var i = 0; i < 5; i++) out.push(Math.pow(decay, i));
    return out;
  }

  function restart(lr) {
    var sparsity = +slider.value;
    $("live-sparsity-out").textContent = sparsity.toFixed(2);
    $("live-density-out").textContent = (1 - sparsity).toFixed(2);
    model = new ToyModel({ n: 5, m: 2, density: 1 - sparsity, importance: importanceVector(),
                           lr: lr || cfg.lr, batch: cfg.batch, seed: cfg.seed });
    step = 0;
    lossEma = NaN;
    run += 1;
    schedule(tick.bind(null, run));
  }

  /* Animation frames pause in background tabs (and in headless browsers); a timer keeps training going. */
  function schedule(fn) {
    var done = false;
    var go = function () { if (!done) { done = true; fn(); } };
    window.requestAnimationFrame(go);
    window.setTimeout(go, 30);
  }

  function tick(id) {
    if (id !== run) return; // a newer restart owns the loop
    var todo = Math.min(cfg.perTick, cfg.steps - step);
    for (var j = 0; j < todo; j++) {
      var loss = model.step();
      if (!isFinite(loss) || !model.finite()) { // never show NaN: restart gently instead
        note = "diverged; restarted with half the learning rate";
        restart(model.lr / 2);
        return;
      }
      lossEma = isNaN(lossEma) ? loss : 0.95 * lossEma + 0.05 * loss;
      step += 1;
    }
    draw();
    if (step < cfg.steps) schedule(tick.bind(null, id));
    else root.setAttribute("data-trainer-done", "1");
  }

  function draw() {
    var cols = model.columns(), info = describe(cols);
    var dpr = window.devicePixelRatio || 1, size = canvas.clientWidth || canvas.width;
    if (canvas.width !== Math.round(size * dpr)) { canvas.width = Math.round(size * dpr); canvas.height = canvas.width; }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var c = size / 2, scale = size / 2 / 1.45; // norms up to ~1.4 fit
    ctx.clearRect(0, 0, size, size);
    ctx.strokeStyle = "#dddddd";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, c); ctx.lineTo(size, c); ctx.moveTo(c, 0); ctx.lineTo(c, size); ctx.stroke();
    ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.arc(c, c, scale, 0, 2 * Math.PI); ctx.stroke();
    ctx.setLineDash([]);
    var on = cols.filter(function (col) { return col.norm > 0.5; })
                 .sort(function (a, b) { return a.angle - b.angle; });
    if (on.length > 2 && info.minGap >= 12) { // the polygon the represented features span (not for near-coincident arrows)
      ctx.strokeStyle = "rgba(0,0,0,0.18)";
      ctx.beginPath();
      on.forEach(function (col, j) {
        var px = c + col.x * scale, py = c - col.y * scale;
        if (j === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      ctx.closePath(); ctx.stroke();
    }
    cols.forEach(function (col, i) { arrow(c, c, c + col.x * scale, c - col.y * scale, COLORS[i % COLORS.length], String(i)); });
    $("live-step").textContent = String(step);
    $("live-loss").textContent = isNaN(lossEma) ? "\u2013" : lossEma.toExponential(2);
    $("live-represented").textContent = info.represented + " / 5";
    $("live-shape").textContent = info.shape + (note ? " (" + note + ")" : "");
    root.setAttribute("data-trainer-steps", String(step));
    root.setAttribute("data-trainer-loss", isNaN(lossEma) ? "" : lossEma.toExponential(3));
    root.setAttribute("data-trainer-represented", String(info.represented));
    root.setAttribute("data-trainer-shape", info.shape);
    root.setAttribute("data-trainer-seed", String(cfg.seed));
  }

  function arrow(x0, y0, x1, y1, color, label) {
    var ang = Math.atan2(y1 - y0, x1 - x0), len = Math.hypot(x1 - x0, y1 - y0), head = Math.min(9, len / 2);
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2.2;
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x1 - head * Math.cos(ang - 0.4), y1 - head * Math.sin(ang - 0.4));
    ctx.lineTo(x1 - head * Math.cos(ang + 0.4), y1 - head * Math.sin(ang + 0.4));
    ctx.closePath(); ctx.fill();
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(label, x1 + 6 * Math.cos(ang) - 3, y1 + 6 * Math.sin(ang) + 4);
  }

  $("live-steps").textContent = String(cfg.steps);
  slider.addEventListener("input", function () { note = ""; restart(); });
  impSelect.addEventListener("change", function () { note = ""; restart(); });
  $("live-restart").addEventListener("click", function () { note = ""; restart(); });
  $("live-new-seed").addEventListener("click", function () {
    note = "";
    cfg.seed = (cfg.seed % 2147483646) + 1;
    $("live-seed").textContent = String(cfg.seed);
    restart();
  });
  $("live-seed").textContent = String(cfg.seed);
  restart();
})();
