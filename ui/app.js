// herald's live page: plain ES module, no build step. It uses the server's own
// API: /v1 over fetch, a session's changes over SSE, /metrics for the stats.

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem('herald.token') ?? '', session: undefined, source: undefined, rates: [], last: undefined };

function headers(extra = {}) {
  return state.token === '' ? extra : { ...extra, authorization: `Bearer ${state.token}` };
}

/** A JSON call to the API; throws an Error with the server's code and message. */
async function api(method, path, body, extra = {}) {
  const response = await fetch(path, { method, headers: headers(body === undefined ? extra : { ...extra, 'content-type': 'application/json' }), body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const parsed = text === '' ? undefined : JSON.parse(text);
  if (!response.ok) {
    const error = new Error(`${parsed?.error?.code ?? response.status}: ${parsed?.error?.message ?? 'the server refused the request'}`);
    error.status = response.status;
    throw error;
  }
  return parsed;
}

function say(text) {
  $('message').textContent = text;
}

function connection(kind, text) {
  const element = $('connection');
  element.dataset.state = kind;
  element.textContent = text;
}

function explain(error) {
  if (error.status === 401) return `The token was refused: ${error.message}. Enter a valid token above.`;
  if (error.status === 403) return `The token does not allow this: ${error.message}`;
  return error.message;
}

// ---- sessions ----

async function loadSessions() {
  try {
    const sessions = await api('GET', '/v1/sessions');
    const list = $('sessions');
    list.replaceChildren(...sessions.map((session) => {
      const item = document.createElement('li');
      const open = document.createElement('button');
      open.textContent = session.id;
      open.setAttribute('aria-label', `open session ${session.id}`);
      open.addEventListener('click', () => void openSession(session.id));
      const remove = document.createElement('button');
      remove.textContent = '×';
      remove.setAttribute('aria-label', `delete session ${session.id}`);
      remove.addEventListener('click', () => void deleteSession(session.id));
      item.append(open, remove);
      return item;
    }));
    say('');
  } catch (error) {
    say(explain(error));
  }
}

async function deleteSession(id) {
  try {
    await api('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
    await loadSessions();
  } catch (error) {
    say(explain(error));
  }
}

// ---- one session, live ----

/** name → { value, version } as shown. */
let shown = new Map();

function render(changedName) {
  const rows = [...shown.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, entry]) => {
    const row = document.createElement('tr');
    row.dataset.name = name;
    const cells = [name, JSON.stringify(entry.value), String(entry.version), String(entry.observers ?? '')].map((text) => {
      const cell = document.createElement('td');
      cell.textContent = text;
      return cell;
    });
    if (name === changedName) {
      cells[1].classList.add('changed');
      cells[2].classList.add('changed');
    }
    row.append(...cells);
    return row;
  });
  $('variables').replaceChildren(...rows);
}

function apply(name, value, version) {
  const current = shown.get(name);
  if (current !== undefined && current.version > version) return; // keep whichever version is higher
  if (value === undefined) shown.delete(name);
  else shown.set(name, { ...current, value, version });
  render(name);
}

async function readAgain() {
  const variables = await api('GET', `/v1/sessions/${encodeURIComponent(state.session)}/variables`);
  shown = new Map(variables.map((v) => [v.name, { value: v.value, version: v.version, observers: shown.get(v.name)?.observers }]));
  render();
}

async function loadObservers() {
  if (state.session === undefined) return;
  try {
    const keys = await api('GET', `/v1/sessions/${encodeURIComponent(state.session)}/inspect`);
    for (const key of keys) {
      const entry = shown.get(key.name);
      if (entry !== undefined) entry.observers = key.observerCount;
    }
    render();
  } catch {
    // The next round tries again.
  }
}

async function openSession(id) {
  state.source?.close();
  state.session = id;
  shown = new Map();
  render();
  $('session-name').textContent = id;
  $('session-view').hidden = false;
  const query = new URLSearchParams({ includeCurrent: '1' });
  if (state.token !== '') query.set('token', state.token);
  const source = new EventSource(`/v1/sessions/${encodeURIComponent(id)}/watch?${query}`);
  state.source = source;
  connection('connecting', 'connecting…');
  source.addEventListener('open', () => {
    attempts = 0;
    connection('live', 'live');
  });
  source.addEventListener('change', (event) => {
    const change = JSON.parse(event.data);
    apply(change.name, change.newValue, change.version);
    connection('live', 'live');
  });
  source.addEventListener('gap', (event) => {
    connection('gap', 'gap: read again');
    const { snapshot } = JSON.parse(event.data);
    shown = new Map(snapshot.map((v) => [v.name, { value: v.value, version: v.version, observers: shown.get(v.name)?.observers }]));
    render();
    connection('live', 'live');
  });
  source.addEventListener('end', (event) => {
    const { reason } = JSON.parse(event.data);
    source.close();
    if (reason === 'token-expired') {
      connection('refused', 'token expired');
      say('The token has expired: enter a new one above.');
    } else if (reason === 'session-ended') {
      connection('ended', 'session ended');
      void loadSessions();
    } else {
      // The server is closing or let the watch go: come back, and read again.
      reconnect(id);
    }
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (a bad token, no such session) or gone: ask once, to say why.
      void api('GET', `/v1/sessions/${encodeURIComponent(id)}`).then(() => reconnect(id), (error) => {
        if (error.status === 401 || error.status === 403) {
          connection('refused', 'token refused');
          say(explain(error));
        } else if (error.status === 404) {
          connection('ended', 'no such session');
        } else {
          reconnect(id);
        }
      });
    } else {
      connection('reconnecting', 'reconnecting…');
    }
  });
}

/** One reconnection at a time per page, each waiting longer (1 s doubling to 30 s, with jitter) while the server stays away. */
let reconnecting;
let attempts = 0;

function reconnect(id) {
  if (reconnecting !== undefined) return;
  connection('reconnecting', 'reconnecting…');
  const delay = Math.min(30_000, 1000 * 2 ** attempts) * (0.75 + Math.random() * 0.5);
  attempts++;
  reconnecting = setTimeout(() => {
    reconnecting = undefined;
    if (state.session !== id) return;
    void openSession(id).then(() => readAgain()).catch(() => reconnect(id));
  }, delay);
}

// ---- stats ----

async function pollStats() {
  try {
    const response = await fetch('/metrics', { headers: headers() });
    if (!response.ok) return;
    const text = await response.text();
    const read = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    const total = read('herald_notifications_total');
    const now = Date.now();
    if (state.last !== undefined) {
      const rate = ((total - state.last.total) * 1000) / Math.max(1, now - state.last.at);
      state.rates = [...state.rates.slice(-59), rate];
      $('rate').textContent = rate.toFixed(1);
      const max = Math.max(1, ...state.rates);
      const points = state.rates.map((r, i) => `${(i * 120) / 59},${30 - (r / max) * 28}`).join(' ');
      $('sparkline').querySelector('polyline').setAttribute('points', points);
    }
    state.last = { total, at: now };
    $('observers').textContent = String(read('herald_observers'));
  } catch {
    // The server is away: the connection state says so.
  }
}

// ---- wiring ----

$('token').value = state.token;
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('herald.token', state.token);
  void loadSessions();
  if (state.session !== undefined) void openSession(state.session);
});
$('create-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const session = await api('POST', '/v1/sessions', { id: $('new-session').value.trim() });
    $('new-session').value = '';
    await loadSessions();
    await openSession(session.id);
  } catch (error) {
    say(explain(error));
  }
});
$('set-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('set-error').textContent = '';
  let value;
  try {
    value = JSON.parse($('set-value').value);
  } catch {
    $('set-error').textContent = 'The value must be JSON: a string is "eco", with the quotes.';
    return;
  }
  try {
    await api('PUT', `/v1/sessions/${encodeURIComponent(state.session)}/variables/${encodeURIComponent($('set-name').value.trim())}`, { value });
  } catch (error) {
    $('set-error').textContent = explain(error);
  }
});

void loadSessions();
setInterval(() => void pollStats(), 1000);
setInterval(() => void loadObservers(), 2000);
