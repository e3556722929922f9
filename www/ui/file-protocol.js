// A classic script, so it runs where the page's modules cannot: opened as a file (file://), the
// browser refuses the modules and the worker, and the page would wait forever. Say what to do.
if (location.protocol === 'file:') {
  const box = document.getElementById('error');
  box.textContent = 'This page was opened as a file (file://), where browsers do not run its modules or ' +
    'workers. Serve it instead: run `make demo` and open http://127.0.0.1:8080/, or put dist/ on any web server.';
  box.hidden = false;
  document.body.dataset.state = 'error';
}
