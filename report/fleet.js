// bpfsnap report, fleet section: a route's nodes on click, and the CPU
// flame graph merged over the nodes or one node's own. A node's graph is a copy of the whole-window graph
// of its archive section (the page holds each graph once). Reads only the
// DOM; never builds markup from data.
(function () {
  'use strict';
  // A route's row opens its nodes' table (the row after it).
  document.querySelectorAll('#fleet tr.fr.has-nodes').forEach(function (tr) {
    tr.addEventListener('click', function () { tr.nextElementSibling.classList.toggle('open'); });
  });
  var sel = document.querySelector('#fleet .fleetsel');
  if (!sel) return;
  var merged = document.querySelector('#fleet .fleetflame[data-node="merged"]');
  var node = document.querySelector('#fleet .fleetflame[data-node="node"]');
  function show(v) {
    v = String(v);
    sel.value = v;
    if (v === 'merged') {
      if (merged) merged.classList.remove('hidden');
      node.classList.add('hidden');
      return true;
    }
    var src = document.querySelector('.flames[data-archive="' + v + '"] .flame[data-slice="all"] svg');
    if (!src || !window.bpfsnapFlame) return false;
    // Copy the graph unzoomed: the copy's frames keep their laid-out places.
    window.bpfsnapFlame.reset(src);
    var copy = src.cloneNode(true);
    while (node.firstChild) node.removeChild(node.firstChild);
    node.appendChild(copy);
    window.bpfsnapFlame.reset(copy);
    if (merged) merged.classList.add('hidden');
    node.classList.remove('hidden');
    return true;
  }
  sel.addEventListener('change', function () { show(sel.value); });
  window.bpfsnapFleet = {show: show};
})();
