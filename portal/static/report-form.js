// While an operator types a report, pain points like it appear beside the form, each with an
// "Affects me too" button. Titles are set as text (never as HTML): nothing typed or stored runs.
(function () {
  "use strict";
  var aside = document.getElementById("similar");
  var list = document.getElementById("similar-list");
  var title = document.getElementById("f-title");
  var text = document.getElementById("f-what_happened");
  if (!aside || !list || !title || !text) { return; }
  var endpoint = aside.getAttribute("data-endpoint");
  var csrf = aside.getAttribute("data-csrf");
  var timer = null;
  var last = "";

  function vote(button, id) {
    var body = new FormData();
    body.append("csrf_token", csrf);
    body.append("vote", "on");
    button.disabled = true;
    fetch("/painpoints/" + id + "/vote", {
      method: "POST", body: body, credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      button.textContent = "\u2713 Counted: affects you too";
      button.setAttribute("aria-pressed", "true");
    }).catch(function () {
      button.disabled = false;
      button.textContent = "Could not count it; try again";
    });
  }

  function show(items) {
    list.textContent = "";
    items.forEach(function (item) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "/painpoints/" + item.id;
      a.className = "subject";
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = item.title;
      li.appendChild(a);
      var b = document.createElement("button");
      b.type = "button";
      b.className = "affects";
      b.textContent = "Affects me too";
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () { vote(b, item.id); });
      li.appendChild(document.createElement("br"));
      li.appendChild(b);
      list.appendChild(li);
    });
    document.getElementById("similar-hint").textContent = items.length
      ? "Pain points like yours. If one is yours, say so; then file your report for what is particular to you."
      : "Nothing like this yet: your report may be the first.";
  }

  function look() {
    var draft = (title.value + "\n" + text.value).trim();
    if (draft.length < 12 || draft === last) { return; }
    last = draft;
    var url = endpoint + "?kind=painpoint&k=5&title=" + encodeURIComponent(title.value) +
      "&text=" + encodeURIComponent(draft.slice(0, 5000));
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { items: [] }; })
      .then(function (data) { show((data.items || []).filter(function (i) { return i.kind === "painpoint"; })); })
      .catch(function () { /* suggestions are a help, never a blocker */ });
  }

  function soon() { clearTimeout(timer); timer = setTimeout(look, 350); }
  title.addEventListener("input", soon);
  text.addEventListener("input", soon);
  look();
}());
