// bpfsnap flame graph: zoom, reset, search, details. Works standalone and
// inline in HTML; every graph is independent. Names come from <title>.
(function () {
  var script = document.currentScript;
  var svg = (script && script.closest && script.closest('svg')) || document.documentElement;
  var frames = Array.prototype.slice.call(svg.querySelectorAll('g.f'));
  var total = parseFloat(svg.getAttribute('data-total')) || 1;
  var unit = svg.getAttribute('data-unit') || 'samples';
  var reset = svg.querySelector('.reset');
  var details = svg.querySelector('.details');
  var matched = svg.querySelector('.matched');
  var pad = 10, full = svg.viewBox.baseVal.width - 2 * pad;
  frames.forEach(function (g) {
    var r = g.querySelector('rect'), t = g.querySelector('text');
    g._x = parseFloat(r.getAttribute('x'));
    g._w = parseFloat(r.getAttribute('width'));
    g._y = parseFloat(r.getAttribute('y'));
    g._name = g.querySelector('title').textContent.replace(/ \([^()]*\)$/, '');
    g._label = t.textContent;
  });
  function fit(g, x, w) {
    var r = g.querySelector('rect'), t = g.querySelector('text');
    r.setAttribute('x', x.toFixed(1));
    r.setAttribute('width', w.toFixed(1));
    t.setAttribute('x', (x + 3).toFixed(1));
    var n = Math.floor((w - 6) / 7);
    t.textContent = n < 3 ? '' : (g._name.length <= n ? g._name : g._name.slice(0, n - 2) + '..');
  }
  function zoom(target) {
    var x0 = target._x, w0 = target._w, y0 = target._y, k = full / w0;
    frames.forEach(function (g) {
      var inside = g._x >= x0 - 0.05 && g._x + g._w <= x0 + w0 + 0.05;
      var below = g._y > y0; // ancestors are drawn lower (root at the bottom)
      if (g._y <= y0 && inside) {
        g.classList.remove('hide');
        fit(g, pad + (g._x - x0) * k, g._w * k);
      } else if (below && g._x <= x0 + 0.05 && g._x + g._w >= x0 + w0 - 0.05) {
        g.classList.remove('hide');
        fit(g, pad, full);
        g.style.opacity = '0.6';
      } else {
        g.classList.add('hide');
      }
    });
    reset.classList.remove('hide');
  }
  function unzoom() {
    frames.forEach(function (g) {
      g.classList.remove('hide');
      g.style.opacity = '';
      fit(g, g._x, g._w);
    });
    reset.classList.add('hide');
  }
  function search(term) {
    var re;
    try { re = new RegExp(term); } catch (e) { re = null; }
    var hits = [];
    frames.forEach(function (g) {
      var r = g.querySelector('rect');
      if (r._fill === undefined) r._fill = r.getAttribute('fill');
      var hit = term && (re ? re.test(g._name) : g._name.indexOf(term) >= 0);
      r.setAttribute('fill', hit ? 'rgb(230,0,230)' : r._fill);
      if (hit) hits.push(g);
    });
    // Share of the total covered by matches, counting nested matches once.
    hits.sort(function (a, b) { return a._x - b._x || b._w - a._w; });
    var covered = 0, end = -1;
    hits.forEach(function (g) {
      if (g._x >= end - 0.01) { covered += parseFloat(g.getAttribute('data-v')); end = g._x + g._w; }
    });
    matched.textContent = term ? 'Matched: ' + (100 * covered / total).toFixed(2) + '%' : '';
    svg.setAttribute('data-matched', term ? (100 * covered / total).toFixed(2) : '');
  }
  frames.forEach(function (g) {
    g.addEventListener('click', function (e) { zoom(g); e.stopPropagation(); });
    g.addEventListener('mouseover', function () {
      details.textContent = g.querySelector('title').textContent;
    });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  reset.addEventListener('click', unzoom);
  svg.querySelector('.search').addEventListener('click', function () {
    var term = window.prompt('Search (regular expression)', '');
    if (term !== null) search(term);
  });
  svg.addEventListener('keydown', function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'f') {
      e.preventDefault();
      var term = window.prompt('Search (regular expression)', '');
      if (term !== null) search(term);
    }
  });
  svg._bpfsnap = { zoom: zoom, unzoom: unzoom, search: search, frames: frames, unit: unit };
})();
