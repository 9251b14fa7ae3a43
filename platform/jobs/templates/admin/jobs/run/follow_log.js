// The log block follows the crawl: the last lines first, then what is written after them (`?since=`),
// from the admin's log view (the API's log rules). It stops once the log is complete; it asks for the
// log only once the run has reached a node.
(function () {
  var pre = document.getElementById("run-log"), note = document.getElementById("run-log-note");
  var next = null;
  function live() { return document.getElementById("run-live"); }
  function later(ms) { setTimeout(poll, ms); }
  function poll() {
    var state = live() ? live().dataset.log : "none";
    if (state === "none") { note.textContent = "No log: the run never reached a node."; return; }
    if (state === "waiting") { note.textContent = "No log yet: the run has not reached a node."; later(2000); return; }
    var query = next === null ? "?tail=200" : "?since=" + next;
    fetch(pre.dataset.url + query, {credentials: "same-origin"}).then(function (response) {
      if (response.status === 204) {  // no log (yet): the header says why
        note.textContent = response.headers.get("X-Log-Missing") || "No log yet.";
        if (live() && live().dataset.terminal !== "true") later(3000);
        return;
      }
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          note.textContent = body.message || "The log could not be read (HTTP " + response.status + ").";
          if (live() && live().dataset.terminal !== "true") later(5000);
        });
      }
      var size = response.headers.get("X-Log-Size");
      var done = response.headers.get("X-Log-Finished") === "true";
      var first = next === null;
      next = response.headers.get("X-Log-Next-Offset");
      done = done && next === size;
      return response.text().then(function (text) {
        var bottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        if (text) pre.textContent += text;
        if (first || bottom) pre.scrollTop = pre.scrollHeight;
        note.textContent = Number(size).toLocaleString() + " bytes" + (done ? ", complete." : ", following the crawl…");
        if (!done) later(text ? 1000 : 2000);
      });
    }).catch(function () { later(5000); });
  }
  poll();
  // A settled run cannot be cancelled: its page's Cancel button goes with the last live update.
  document.body.addEventListener("htmx:afterSwap", function () {
    var panel = live(), cancel = document.getElementById("run-cancel");
    if (panel && panel.dataset.terminal === "true" && cancel) cancel.closest("li").remove();
  });
})();
