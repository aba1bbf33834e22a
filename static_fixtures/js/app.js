// ferricorn demo script: proves text/javascript gets charset=utf-8.
document.addEventListener("DOMContentLoaded", () => {
  document.body.insertAdjacentHTML("beforeend", "<p>app.js ran — ✓</p>");
});
