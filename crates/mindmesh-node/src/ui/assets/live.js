// Live updates for the dashboard: the node sends an event when something changed; the page
// then fetches itself again and swaps its content. Without this script (or without
// EventSource) the page is the same, only static: reload to refresh.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  var dot = document.getElementById("live");
  var first = true;
  var busy = false;
  function mark(state, title) {
    if (!dot) return;
    dot.className = "live " + state;
    dot.title = title;
  }
  function refresh() {
    if (busy) return;
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401) { location.assign("/ui/login"); throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) main.replaceWith(fresh);
        mark("on", "live: updated " + new Date().toLocaleTimeString());
      })
      .catch(function (e) { mark("off", "live: " + e.message); })
      .then(function () { busy = false; });
  }
  var es = new EventSource("/ui/live");
  es.addEventListener("changed", function () {
    // the first event only says the stream is open
    if (first) { first = false; mark("on", "live"); return; }
    refresh();
  });
  es.onerror = function () { first = true; mark("off", "live: reconnecting"); };
})();
