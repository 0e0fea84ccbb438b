// Progressive enhancement of the progress page: live step updates over Server-Sent Events.
// The page is complete without this file; it only keeps the steps current without a reload.
"use strict";

(function () {
  const progress = document.getElementById("progress");
  if (!progress || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live-status");
  const source = new EventSource(progress.dataset.stream);

  function show(step) {
    const item = progress.querySelector('li[data-task="' + CSS.escape(step.task) + '"]');
    if (!item) {
      return;
    }
    item.className = "step state-" + step.state;
    item.querySelector(".badge").textContent = step.state_text;
    item.querySelector(".message").textContent = step.message;
    const invoice = item.querySelector(".invoice");
    if (invoice) {
      invoice.hidden = step.state !== "done";
    }
  }

  source.addEventListener("open", function () {
    live.hidden = false;
  });
  source.addEventListener("task", function (event) {
    show(JSON.parse(event.data));
  });
  source.addEventListener("complete", function () {
    source.close(); // the server closed the stream on purpose: do not reconnect
    live.hidden = true;
  });
})();
