// bpfsnap report: sortable tables, endpoint charts, flame graph slices and
// process selection, downloads from embedded data. Reads only the DOM and
// the page's own embedded JSON; never builds markup from data.
(function () {
  'use strict';
  function cellValue(row, i, numeric) {
    var c = row.cells[i], v = c && c.getAttribute('data-v');
    if (v === null || v === undefined) v = c ? c.textContent : '';
    return numeric ? parseFloat(v) || 0 : v.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener('click', function () {
        var numeric = th.getAttribute('data-type') !== 'text';
        var desc = !th.classList.contains('desc');
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove('asc', 'desc'); });
        th.classList.add(desc ? 'desc' : 'asc');
        var body = table.tBodies[0];
        // Keep each endpoint's chart row right after it.
        var groups = [];
        Array.prototype.forEach.call(body.rows, function (r) {
          if (r.classList.contains('charts')) groups[groups.length - 1].push(r); else groups.push([r]);
        });
        groups.sort(function (a, b) {
          var x = cellValue(a[0], i, numeric), y = cellValue(b[0], i, numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
        });
        groups.forEach(function (g) { g.forEach(function (r) { body.appendChild(r); }); });
      });
    });
  });
  document.querySelectorAll('tr.ep.has-charts').forEach(function (tr) {
    tr.addEventListener('click', function () { tr.nextElementSibling.classList.toggle('open'); });
  });
  var first = document.querySelector('tr.ep.has-charts');
  if (first) first.nextElementSibling.classList.add('open');

  function showSlice(archive, slice) {
    var flames = document.querySelector('.flames[data-archive="' + archive + '"]');
    if (!flames) return;
    flames.querySelectorAll('.flame').forEach(function (f) {
      var shown = f.getAttribute('data-slice') === String(slice);
      // A slice's graph comes packed (report/packed.go: the page opens
      // fast) and is unpacked the first time it is shown. The markup is
      // bpfsnap's own flame graph, names escaped when it was written.
      if (shown && f.hasAttribute('data-packed')) {
        var packed = f.getAttribute('data-packed');
        f.removeAttribute('data-packed');
        unpack(packed).then(function (svg) {
          f.innerHTML = svg;
          var g = f.querySelector('svg.bpfsnap-flame');
          if (g && window.bpfsnapFlame) window.bpfsnapFlame.reset(g);
          var sel = document.querySelector('.cpuctl[data-archive="' + archive + '"] .procsel');
          if (sel && !f.classList.contains('hidden')) focusProcess(archive, sel.value);
        });
      }
      f.classList.toggle('hidden', !shown);
    });
    document.querySelectorAll('.cpuctl[data-archive="' + archive + '"] .slicebtn').forEach(function (b) {
      b.classList.toggle('active', b.getAttribute('data-slice') === String(slice));
    });
    document.querySelectorAll('.timeline[data-archive="' + archive + '"] .bar').forEach(function (b) {
      b.classList.toggle('sel', b.getAttribute('data-slice') === String(slice));
    });
    var sel = document.querySelector('.cpuctl[data-archive="' + archive + '"] .procsel');
    if (sel) focusProcess(archive, sel.value);
  }
  function visibleFlame(archive) {
    return document.querySelector('.flames[data-archive="' + archive + '"] .flame:not(.hidden) svg');
  }
  // Selecting a process zooms the visible flame graph to its frame (the
  // first level under "all"), found by its name in the frames' titles.
  function focusProcess(archive, name) {
    var svg = visibleFlame(archive);
    if (!svg || !window.bpfsnapFlame) return;
    if (!name) { window.bpfsnapFlame.reset(svg); return; }
    var target = null, best = -1;
    svg.querySelectorAll('g.f').forEach(function (g) {
      var t = g.querySelector('title').textContent.split('\n')[0];
      var y = parseFloat(g.querySelector('rect').getAttribute('y'));
      if (t === name && y > best) { best = y; target = g; }
    });
    if (target) window.bpfsnapFlame.zoom(svg, target);
  }
  document.querySelectorAll('.cpuctl').forEach(function (ctl) {
    var archive = ctl.getAttribute('data-archive');
    ctl.querySelectorAll('.slicebtn').forEach(function (b) {
      b.addEventListener('click', function () { showSlice(archive, b.getAttribute('data-slice')); });
    });
    ctl.querySelector('.procsel').addEventListener('change', function (e) { focusProcess(archive, e.target.value); });
  });
  document.querySelectorAll('.timeline').forEach(function (fig) {
    var archive = fig.getAttribute('data-archive');
    fig.querySelectorAll('.bar').forEach(function (bar) {
      bar.addEventListener('click', function () { showSlice(archive, bar.getAttribute('data-slice')); });
    });
  });
  // unpack reverses report/packed.go: base64, then gzip.
  function unpack(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text();
  }
  function downloadText(el) {
    if (el.hasAttribute('data-packed')) return unpack(el.getAttribute('data-packed'));
    var data = JSON.parse(el.textContent);
    return Promise.resolve(typeof data === 'string' ? data : JSON.stringify(data, null, 2));
  }
  document.querySelectorAll('button.download').forEach(function (b) {
    b.addEventListener('click', function () {
      downloadText(document.getElementById(b.getAttribute('data-source'))).then(function (text) { save(b, text); });
    });
  });
  function save(b, text) {
    var url = URL.createObjectURL(new Blob([text], {type: b.getAttribute('data-type')}));
    var a = document.createElement('a');
    a.href = url;
    a.download = b.getAttribute('data-name');
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }
  window.bpfsnapReport = {showSlice: showSlice, focusProcess: focusProcess};
})();
