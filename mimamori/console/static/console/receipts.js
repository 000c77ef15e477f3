// Live numbers and curve on the read-confirmation page while staff watch; without JavaScript
// its <noscript> refresh reloads every 10 s. A static file, so the Content-Security-Policy allows it.
(function () {
  var script = document.currentScript;
  var url = script.getAttribute("data-url") + window.location.search;
  var every = Number(script.getAttribute("data-every")) * 1000;
  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (data) {
        document.querySelectorAll("[data-total]").forEach(function (cell) {
          cell.textContent = data[cell.getAttribute("data-total")];
        });
        // Classes the page does not list yet (the fan-out was still writing when it was drawn):
        // draw the page again rather than leave them out.
        if (data.rows.length !== document.querySelectorAll("[data-row]").length ||
            data.rows.some(function (row) { return !document.querySelector('[data-row="' + row.key + '"]'); })) {
          window.location.reload();
          return;
        }
        data.rows.forEach(function (row) {
          var line = document.querySelector('[data-row="' + row.key + '"]');
          line.querySelectorAll("[data-col]").forEach(function (cell) {
            cell.textContent = row[cell.getAttribute("data-col")];
          });
        });
        document.getElementById("receipts-chart").innerHTML = data.chart;
        setTimeout(poll, every);
      })
      .catch(function () { setTimeout(poll, every * 5); });
  }
  setTimeout(poll, every);
})();
