// Live updates for the operator dashboard: one EventSource on /events/stream.
// List page: per-state counts and the rows of changed sagas update in place.
// Saga page: when this saga's version moves, its facts and timeline are re-read.
(function () {
  "use strict";
  var live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  var dot = document.createElement("span");
  dot.className = "live-dot"; dot.title = "live updates"; dot.id = "live-dot";
  var h1 = document.querySelector("header h1"); if (h1) h1.appendChild(dot);
  var source = new EventSource("/events/stream");
  source.onopen = function () { dot.className = "live-dot on"; };
  source.onerror = function () { dot.className = "live-dot"; };

  source.addEventListener("counts", function (msg) {
    var counts = JSON.parse(msg.data);
    Object.keys(counts).forEach(function (state) {
      var el = document.querySelector('[data-count="' + state + '"]');
      if (el) el.textContent = counts[state];
    });
  });

  var sagaCard = document.getElementById("saga");
  var refreshing = false;
  function refreshSaga() {
    if (refreshing) return; refreshing = true;
    fetch("/sagas/" + encodeURIComponent(sagaCard.dataset.saga) + "/timeline", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        var known = {};
        document.querySelectorAll("#timeline li").forEach(function (li) { known[li.dataset.version] = true; });
        document.getElementById("timeline").outerHTML = d.timeline;
        document.querySelectorAll("#timeline li").forEach(function (li) {
          if (!known[li.dataset.version]) li.classList.add("flash-new");
        });
        var st = document.getElementById("saga-state");
        st.textContent = d.state; st.className = "state state-" + d.state;
        document.getElementById("saga-step").textContent = d.step;
        document.getElementById("saga-updated").textContent = d.updated;
        sagaCard.dataset.version = d.version;
        document.querySelectorAll('#action-retry input[name="step"]').forEach(function (i) { i.value = d.step; });
      })
      .finally(function () { refreshing = false; });
  }

  source.addEventListener("saga", function (msg) {
    var s = JSON.parse(msg.data);
    if (sagaCard) {
      if (s.saga_id === sagaCard.dataset.saga && s.version > Number(sagaCard.dataset.version)) refreshSaga();
      return;
    }
    var row = document.querySelector('tr[data-saga="' + CSS.escape(s.saga_id) + '"]');
    if (!row) return;
    var st = row.querySelector('[data-field="state"]');
    st.textContent = s.state; st.className = "state state-" + s.state;
    row.querySelector('[data-field="step"]').textContent = s.step;
  });
})();
