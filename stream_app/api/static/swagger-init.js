// Starts Swagger UI on the /docs page. A file of its own, not an inline script, so the page's
// Content-Security-Policy can allow scripts from this server only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", // relative to /docs: works behind a path prefix too
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null, // the default validator badge calls an external service
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
