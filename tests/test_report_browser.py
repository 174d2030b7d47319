"""The HTML error report in a real headless browser (Debian's Chromium),
driven through the DevTools protocol: it loads from disk with no console
error, every picture loads, the counts on the page equal the json, and the
type filter shows the cards of that type.

Skipped (with the reason) only where no Chromium is installed; ``.ci/run``
installs it (``apt-get install chromium``)."""
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((p for p in (os.environ.get('CHROMIUM'), '/usr/bin/chromium',
                             shutil.which('chromium'),
                             shutil.which('chromium-browser')) if p and
                 os.path.isfile(p)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason='no Chromium (apt-get install chromium; .ci/run '
    'installs it)')
FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync',
         '--remote-debugging-port=0', '--remote-debugging-address=127.0.0.1')


class Browser:
    """One headless Chromium and a DevTools connection to its page."""

    def __init__(self, profile: Path, timeout: float = 30.):
        import websocket  # websocket-client
        self.timeout = timeout
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f'--user-data-dir={profile}', 'about:blank'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / 'DevToolsActivePort'
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError('Chromium did not open its DevTools port')
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list',
                                    timeout=timeout) as reply:
            pages = [t for t in json.load(reply) if t['type'] == 'page']
        self.ws = websocket.create_connection(
            pages[0]['webSocketDebuggerUrl'], timeout=timeout,
            suppress_origin=True)
        self.next_id = 0
        self.events = []

    def send(self, method: str, **params) -> dict:
        """Call a DevTools method and return its result (events that arrive
        meanwhile are kept in ``events``)."""
        self.next_id += 1
        self.ws.send(json.dumps(dict(id=self.next_id, method=method,
                                     params=params)))
        while True:
            message = json.loads(self.ws.recv())
            if message.get('id') == self.next_id:
                if 'error' in message:
                    raise RuntimeError(f'{method}: {message["error"]}')
                return message.get('result', {})
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get('method') == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str):
        result = self.send('Runtime.evaluate', expression=expression,
                           returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in result:
            raise RuntimeError(str(result['exceptionDetails']))
        return result['result'].get('value')

    def errors(self) -> list:
        """Console errors, uncaught exceptions and failed loads so far."""
        found = []
        for e in self.events:
            method, params = e.get('method'), e.get('params', {})
            if method == 'Runtime.exceptionThrown':
                found.append(params['exceptionDetails'].get('text'))
            elif method == 'Runtime.consoleAPICalled' and \
                    params.get('type') in ('error', 'assert'):
                found.append(str(params.get('args')))
            elif method == 'Log.entryAdded' and \
                    params['entry'].get('level') == 'error':
                found.append(params['entry'].get('text'))
        return found

    def close(self) -> None:
        if getattr(self, 'ws', None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / 'chromium-profile'
    profile.mkdir()
    b = Browser(profile)
    yield b
    b.close()


def _report(out: Path) -> dict:
    """A report of known counts: one card of every error type."""
    from mmdet_odam.evaluation.error_analysis import (ErrorCounts,
                                                      classify_detections)
    from mmdet_odam.visualization.report import ErrorReport
    from test_analyze_errors import _records
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)
    heat = np.zeros((64, 80), np.float32)
    heat[20:30, 15:25] = 1.
    counts = ErrorCounts(class_names=('person', 'car'))
    res = classify_detections(
        [[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]], [.9, .8, .7],
        [0, 0, 1], [[0, 0, 10, 10]], [0])
    counts.add(res, [0, 0, 1], [0])
    report = ErrorReport(str(out), ('person', 'car'))
    records = _records(heat)
    records[2] = dict(records[2], class_name='car', label=1)
    report.add_image(image, 'a.png', records)
    report.finish(counts.summary(), dict(config='test'))
    return json.loads((out / 'errors.json').read_text())


def _open(browser: Browser, page: Path) -> None:
    for domain in ('Page', 'Runtime', 'Log'):
        browser.send(f'{domain}.enable')
    browser.send('Page.navigate', url=page.resolve().as_uri())
    browser.wait_for('Page.loadEventFired')


def test_report_page_in_chromium(tmp_path, browser):
    out = tmp_path / 'report'
    data = _report(out)
    _open(browser, out / 'index.html')
    # every picture (lazy ones too) loads from the folder
    loaded = browser.evaluate("""new Promise(function(done){
        var imgs=Array.prototype.slice.call(document.images);
        imgs.forEach(function(i){i.loading='eager';});
        var t0=Date.now();
        (function poll(){
          if(imgs.every(function(i){return i.complete;})||Date.now()-t0>10000)
            done(imgs.map(function(i){return [i.getAttribute('src'),
                                              i.naturalWidth];}));
          else setTimeout(poll,50);})();})""")
    assert loaded and all(width > 0 for _, width in loaded), loaded
    assert browser.errors() == []
    counts = browser.evaluate("""(function(){var o={};
        document.querySelectorAll('#counts tr[data-type]').forEach(function(r){
          o[r.dataset.type]=parseInt(r.querySelector('.count').dataset.count);
        });return o;})()""")
    assert counts == data['counts']
    assert browser.evaluate(
        "parseInt(document.getElementById('total').dataset.count)") == \
        data['total']
    assert browser.evaluate(
        "document.getElementById('shown').dataset.count") == \
        str(len(data['cards']))
    # the filters: one type, then one class
    shown = browser.evaluate("""(function(){
        var s=document.getElementById('filter-type');s.value='duplicate';
        s.dispatchEvent(new Event('change'));
        return Array.prototype.filter.call(document.querySelectorAll('.card'),
          function(c){return !c.hidden;}).map(function(c){
            return c.dataset.type;});})()""")
    assert shown == ['duplicate']
    shown = browser.evaluate("""(function(){
        var s=document.getElementById('filter-type');s.value='all';
        var c=document.getElementById('filter-class');c.value='car';
        c.dispatchEvent(new Event('change'));
        return parseInt(document.getElementById('shown').dataset.count);
        })()""")
    assert shown == sum(c['class_name'] == 'car' for c in data['cards']) == 1
    # sorting by score, low first, puts the missed object (score 0) first
    first = browser.evaluate("""(function(){
        document.getElementById('filter-class').value='all';
        var s=document.getElementById('sort-by');s.value='score:asc';
        s.dispatchEvent(new Event('change'));
        return document.querySelector('.card').dataset.type;})()""")
    assert first == 'missed'
    assert browser.errors() == []


def test_browser_sees_a_broken_page(tmp_path, browser):
    """The check itself: a script error and a missing picture are caught."""
    page = tmp_path / 'broken.html'
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                    '<script>undefinedFunction();</script></body></html>')
    _open(browser, page)
    time.sleep(0.5)
    browser.evaluate('1')  # drain the events that arrived
    errors = ' '.join(map(str, browser.errors()))
    assert 'Uncaught' in errors or 'undefinedFunction' in errors
