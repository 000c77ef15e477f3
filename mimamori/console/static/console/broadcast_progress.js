// Live counts on a broadcast's page while it is sending (the page works without it: its
// <noscript> refresh reloads every 3 s). A static file, so the Content-Security-Policy allows it.
(function () {
  var url = document.currentScript.getAttribute("data-url");
  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        document.querySelectorAll("[data-count]").forEach(function (cell) {
          cell.textContent = data[cell.getAttribute("data-count")];
        });
        // Once finished, reload for the final status and any failed addresses.
        if (data.status !== "sending") { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
