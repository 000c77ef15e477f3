// The compose page's live count 「N 家庭・M 通」: whenever the recipients change, ask the
// console how many households and mails the choice reaches now. Without JavaScript the
// confirmation page shows the same count. A static file, so the Content-Security-Policy allows it.
(function () {
  var form = document.querySelector("form[data-reach-url]");
  if (!form) { return; }
  var url = form.getAttribute("data-reach-url");
  var out = form.querySelector("[data-reach]");
  var names = ["municipalities", "schools", "grades", "groups", "classes"];
  var asked = 0;
  function count() {
    var query = new URLSearchParams();
    names.forEach(function (name) {
      form.querySelectorAll('[name="' + name + '"]').forEach(function (input) {
        if ((input.type !== "checkbox" || input.checked) && input.value !== "") {
          query.append(name, input.value);
        }
      });
    });
    var mine = ++asked;
    fetch(url + "?" + query.toString(), {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (mine !== asked) { return; }  // an older answer arriving late
        out.classList.toggle("error", !data.text || data.registrants === 0);
        out.textContent = data.text || data.errors.join(" ");
      })
      .catch(function () {});
  }
  form.querySelector("fieldset.picker").addEventListener("change", count);
  count();
})();

// The answer choices' shortcut 「安否確認（無事／けが／支援が必要）」: fill the inputs here rather
// than post the form back (which is what the button does without JavaScript).
(function () {
  var button = document.querySelector("[data-fill-answers]");
  if (!button) { return; }
  button.addEventListener("click", function (event) {
    event.preventDefault();
    var choices = button.getAttribute("data-fill-answers").split("|");
    var inputs = document.querySelectorAll('input[name="answers"]');
    inputs.forEach(function (input, index) { input.value = choices[index] || ""; });
    if (inputs.length) { inputs[0].focus(); }
  });
})();
