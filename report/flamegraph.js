// bpfsnap flame graph: zoom, reset, search, details. Names are read from
// each frame's <title> (first line) and written back only with textContent,
// so no frame name is ever parsed as markup or code.
(function () {
  "use strict";
  function num(el, a) { return parseFloat(el.getAttribute(a)) || 0; }

  function init(svg) {
    if (svg.__bpfsnapFlame) return svg.__bpfsnapFlame;
    var pad = num(svg, "data-pad"), charW = num(svg, "data-char-width");
    var width = svg.viewBox.baseVal.width;
    var total = num(svg, "data-total"), unit = svg.getAttribute("data-unit") || "samples";
    var frames = [];
    var gs = svg.querySelectorAll("g.f");
    for (var i = 0; i < gs.length; i++) {
      var g = gs[i], rect = g.querySelector("rect"), text = g.querySelector("text");
      var title = g.querySelector("title").textContent;
      var nl = title.indexOf("\n");
      frames.push({ g: g, rect: rect, text: text, name: nl < 0 ? title : title.slice(0, nl),
        info: nl < 0 ? "" : title.slice(nl + 1), n: num(g, "data-n"),
        x: num(rect, "x"), y: num(rect, "y"), w: num(rect, "width") });
    }
    var state = { svg: svg, frames: frames, zoomed: null, term: "" };
    var resetBtn = svg.querySelector(".reset"), searchBtn = svg.querySelector(".search");
    var matched = svg.querySelector(".matched"), details = svg.querySelector(".details");

    function label(f, w) {
      var fit = Math.floor((w - 6) / charW);
      if (fit < 3) return "";
      if (f.name.length <= fit) return f.name;
      return f.name.slice(0, fit - 2) + "..";
    }
    function place(f, x, w) {
      f.rect.setAttribute("x", x.toFixed(2));
      f.rect.setAttribute("width", w.toFixed(2));
      var l = label(f, w);
      if (!f.text) {
        if (!l) return;
        // Narrow frames are written without a label; make one on demand.
        f.text = document.createElementNS("http://www.w3.org/2000/svg", "text");
        f.text.setAttribute("y", (f.y + 11.5).toFixed(2));
        f.g.appendChild(f.text);
      }
      f.text.setAttribute("x", (x + 3).toFixed(2));
      f.text.textContent = l;
    }
    function reset() {
      state.zoomed = null;
      frames.forEach(function (f) {
        f.g.classList.remove("hidden", "parent");
        place(f, f.x, f.w);
      });
      resetBtn.classList.add("hidden");
    }
    function zoom(target) {
      var z = null;
      frames.forEach(function (f) { if (f.g === target) z = f; });
      if (!z) return;
      state.zoomed = z;
      var eps = 0.0001, scale = (width - 2 * pad) / z.w;
      frames.forEach(function (f) {
        var show = false, parent = false;
        if (f === z) { show = true; }
        else if (f.y < z.y) { show = f.x >= z.x - eps && f.x + f.w <= z.x + z.w + eps; }
        else if (f.y > z.y) { show = parent = f.x <= z.x + eps && f.x + f.w >= z.x + z.w - eps; }
        f.g.classList.toggle("hidden", !show);
        f.g.classList.toggle("parent", parent);
        if (!show) return;
        if (f === z || parent) place(f, pad, width - 2 * pad);
        else place(f, pad + (f.x - z.x) * scale, f.w * scale);
      });
      resetBtn.classList.remove("hidden");
    }
    function search(term) {
      state.term = term || "";
      var re = null;
      if (state.term) {
        try { re = new RegExp(state.term); }
        catch (e) { re = new RegExp(state.term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")); }
      }
      var hits = [];
      frames.forEach(function (f) {
        var m = !!re && re.test(f.name);
        f.g.classList.toggle("match", m);
        if (m) hits.push(f);
      });
      // Count each matched subtree once: a match nested in another
      // match's x range is its descendant.
      hits.sort(function (a, b) { return a.x - b.x || b.w - a.w; });
      var sum = 0, end = -1;
      hits.forEach(function (f) {
        if (f.x >= end - 0.0001) { sum += f.n; end = f.x + f.w; }
      });
      var pct = total > 0 ? 100 * sum / total : 0;
      matched.textContent = re ? "Matched: " + pct.toFixed(1) + "%" : "";
      return { frames: hits.length, samples: sum, pct: pct };
    }
    function ask() {
      var t = window.prompt("Search frames (regular expression)", state.term);
      if (t !== null) search(t);
    }

    svg.addEventListener("click", function (e) {
      var g = e.target.closest ? e.target.closest("g.f") : null;
      if (g && svg.contains(g)) zoom(g);
    });
    svg.addEventListener("mouseover", function (e) {
      var g = e.target.closest ? e.target.closest("g.f") : null;
      if (!g) return;
      frames.forEach(function (f) { if (f.g === g) details.textContent = f.name + " — " + f.info; });
    });
    svg.addEventListener("mouseout", function () { details.textContent = ""; });
    resetBtn.addEventListener("click", function (e) { e.stopPropagation(); reset(); });
    searchBtn.addEventListener("click", function (e) { e.stopPropagation(); ask(); });
    document.addEventListener("keydown", function (e) {
      var standalone = document.documentElement === svg;
      if ((e.ctrlKey || e.metaKey) && e.key === "f" && (standalone || svg.matches(":hover"))) {
        e.preventDefault();
        ask();
      }
      if (e.key === "Escape" && (standalone || svg.matches(":hover"))) { reset(); search(""); }
    });
    svg.__bpfsnapFlame = { zoom: zoom, reset: reset, search: search };
    return svg.__bpfsnapFlame;
  }

  function initAll() {
    var all = document.querySelectorAll("svg.bpfsnap-flame");
    for (var i = 0; i < all.length; i++) init(all[i]);
  }
  window.bpfsnapFlame = {
    search: function (svg, term) { return init(svg).search(term); },
    reset: function (svg) { init(svg).reset(); },
    zoom: function (svg, g) { init(svg).zoom(g); }
  };
  initAll();
  document.addEventListener("DOMContentLoaded", initAll);
})();
