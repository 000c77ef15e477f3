// Live counts on a broadcast's page while it is sending (the page works without it: its
// <noscript> refresh reloads every 3 s, and a link reloads at once). A static file, so the
// Content-Security-Policy allows it.
(function () {
  var url = document.currentScript.getAttribute("data-url");
  var bar = document.getElementById("delivery-progress");
  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (data) {
        document.querySelectorAll("[data-count]").forEach(function (cell) {
          cell.textContent = data[cell.getAttribute("data-count")];
        });
        if (bar) {
          bar.max = Math.max(data.messages, 1);
          bar.value = data.sent + data.failed;
        }
        // Once finished, reload for the final status, the failed addresses and the reminders.
        if (data.status !== "sending") { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
