// tenancyd's dashboard (GET /admin/ui): a client of the admin API.
//
// The admin key lives in sessionStorage only (gone when the tab closes) and
// goes out as X-Admin-Key to this origin's admin API; nothing is loaded from
// elsewhere. Tenants are listed a page at a time (GET /admin/tenants pages
// by id: start_after, limit), so 10,000 tenants cost one page; the filter is
// an id prefix, answered by starting the page just before it. Every 5 s the
// page and the open tenant are read again and the rows updated in place.
'use strict';

(function () {
  const KEY_STORAGE = 'tenancy-admin-key';
  const PAGE_SIZE = 50;
  const REFRESH_MS = 5000;
  const MB = 1048576;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem(KEY_STORAGE) || '',
    // start_after of each page shown so far (for "previous").
    starts: [''],
    next: null,
    prefix: '',
    warning: 0.9,
    rows: new Map(),  // tenant id -> <tr>
    detail: null,     // the open tenant's id
    detailInfo: null,
    timer: null,
  };

  // ---- the admin API -----------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = {'X-Admin-Key': state.key};
    const init = {method, headers, cache: 'no-store', credentials: 'omit'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'unreachable', 'the server cannot be reached');
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch (e) { json = null; }
    }
    if (!res.ok) {
      const err = json && json.error ? json.error : {code: 'http_' + res.status, message: text};
      throw new ApiError(res.status, err.code, err.message || ('HTTP ' + res.status));
    }
    return json;
  }

  const enc = encodeURIComponent;

  // ---- formatting ---------------------------------------------------------

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function limitsText(t) {
    const parts = [];
    if (t.requests_per_second) parts.push(t.requests_per_second + ' req/s');
    for (const [name, n] of Object.entries(t.limits || {})) parts.push(name + ' ' + n);
    return parts.length ? parts.join(', ') : 'defaults';
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // A usage bar: green, amber from the warning fraction, red at the quota.
  function usageBar() {
    const wrap = el('div', 'usage');
    const bar = el('div', 'bar');
    bar.appendChild(el('span'));
    wrap.appendChild(bar);
    wrap.appendChild(el('span', 'usage-text'));
    return wrap;
  }

  function updateUsageBar(wrap, used, quotaBytes) {
    const bar = wrap.firstChild;
    const fill = bar.firstChild;
    let text;
    let level = 'ok';
    let width = 0;
    if (quotaBytes > 0) {
      const f = used / quotaBytes;
      width = Math.min(100, f * 100);
      level = f >= 1 ? 'full' : f >= state.warning ? 'warn' : 'ok';
      text = bytes(used) + ' / ' + bytes(quotaBytes) + ' (' + Math.floor(f * 100) + ' %)';
    } else {
      text = bytes(used) + ' / no quota';
    }
    const cls = 'bar ' + level;
    if (bar.className !== cls) bar.className = cls;
    const w = width.toFixed(1) + '%';
    if (fill.style.width !== w) fill.style.width = w;
    setText(wrap.lastChild, text);
  }

  // ---- login --------------------------------------------------------------

  function showLogin(message) {
    stopRefresh();
    state.key = '';
    sessionStorage.removeItem(KEY_STORAGE);
    $('app').hidden = true;
    $('forget').hidden = true;
    $('login').hidden = false;
    $('updated').textContent = '';
    const err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    clearTable();
    closeDetail();
    $('login-key').focus();
  }

  async function login(key) {
    state.key = key;
    try {
      const page = await api('GET', '/admin/tenants?limit=1');
      if (typeof page.quota_warning_fraction === 'number') {
        state.warning = page.quota_warning_fraction;
      }
    } catch (e) {
      showLogin(e.status === 401 ? 'Wrong admin key: the server refused it.'
                : e.status === 403 ? 'The admin API is disabled on this server: ' + e.message
                : 'Cannot open the dashboard: ' + e.message);
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $('login-error').hidden = true;
    $('login').hidden = true;
    $('app').hidden = false;
    $('forget').hidden = false;
    $('login-key').value = '';
    await loadPage();
    startRefresh();
  }

  // Errors from any call once logged in: a refused key goes back to the login.
  function handleError(e) {
    if (e.status === 401) {
      showLogin('Wrong admin key: the server refused it.');
      return;
    }
    const box = $('app-error');
    box.textContent = e.message;
    box.hidden = false;
  }

  // ---- the tenants table --------------------------------------------------

  function clearTable() {
    $('tenants').tBodies[0].replaceChildren();
    state.rows.clear();
  }

  // The largest string below every id that starts with `prefix`, so that
  // start_after=beforePrefix(p) lists from the first id >= p.
  function beforePrefix(prefix) {
    if (!prefix) return '';
    const last = prefix.charCodeAt(prefix.length - 1);
    return prefix.slice(0, -1) + String.fromCharCode(last - 1) + '~';
  }

  function pageStart() {
    const start = state.starts[state.starts.length - 1];
    return start === '' ? beforePrefix(state.prefix) : start;
  }

  async function loadPage() {
    const start = pageStart();
    let path = '/admin/tenants?limit=' + PAGE_SIZE;
    if (start) path += '&start_after=' + enc(start);
    let page;
    try {
      page = await api('GET', path);
    } catch (e) {
      handleError(e);
      return;
    }
    $('app-error').hidden = true;
    if (typeof page.quota_warning_fraction === 'number') {
      state.warning = page.quota_warning_fraction;
    }
    let tenants = page.tenants;
    let next = page.next_start_after;
    if (state.prefix) {
      const matching = tenants.filter((t) => t.tenant_id.startsWith(state.prefix));
      if (matching.length < tenants.length) next = null;
      tenants = matching;
    }
    state.next = next;
    renderRows(tenants);
    const n = state.starts.length;
    setText($('page-info'), 'page ' + n + (tenants.length ? ' \u00b7 ' + tenants[0].tenant_id +
        ' \u2013 ' + tenants[tenants.length - 1].tenant_id : ''));
    $('prev').disabled = n <= 1;
    $('next').disabled = !state.next;
    $('empty').hidden = tenants.length > 0;
    setText($('updated'), 'updated ' + new Date().toLocaleTimeString());
  }

  function newRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.tenant = id;
    const cells = ['id', 'state', 'storage', 'keys num', 'api num', 'calls num', 'last', 'limits'];
    for (const c of cells) tr.appendChild(el('td', c));
    tr.children[0].appendChild(el('a', 'tenant-link', id));
    tr.children[0].firstChild.href = '#';
    tr.children[2].appendChild(usageBar());
    tr.addEventListener('click', (ev) => {
      ev.preventDefault();
      openDetail(id);
    });
    return tr;
  }

  // Updates the rows in place (no flicker): a row per tenant, kept across
  // refreshes, its cells written only when their text changed.
  function renderRows(tenants) {
    const body = $('tenants').tBodies[0];
    const seen = new Set();
    let before = body.firstChild;
    for (const t of tenants) {
      seen.add(t.tenant_id);
      let tr = state.rows.get(t.tenant_id);
      if (!tr) {
        tr = newRow(t.tenant_id);
        state.rows.set(t.tenant_id, tr);
      }
      if (tr !== before) body.insertBefore(tr, before);
      else before = before.nextSibling;
      const c = tr.children;
      setText(c[1], t.state);
      c[1].className = 'state ' + t.state;
      updateUsageBar(c[2].firstChild, t.storage_used_bytes, Math.round(t.quota_mb * MB));
      setText(c[3], String(t.keys));
      setText(c[4], String(t.api_keys));
      setText(c[5], String(t.api_calls_today));
      setText(c[6], ago(t.last_active));
      c[6].title = t.last_active || '';
      setText(c[7], limitsText(t));
      tr.classList.toggle('selected', t.tenant_id === state.detail);
    }
    for (const [id, tr] of state.rows) {
      if (!seen.has(id)) {
        tr.remove();
        state.rows.delete(id);
      }
    }
  }

  // ---- a tenant's detail --------------------------------------------------

  async function openDetail(id) {
    state.detail = id;
    for (const [rid, tr] of state.rows) tr.classList.toggle('selected', rid === id);
    await loadDetail();
  }

  function closeDetail() {
    state.detail = null;
    state.detailInfo = null;
    $('detail').hidden = true;
    for (const tr of state.rows.values()) tr.classList.remove('selected');
  }

  async function loadDetail() {
    const id = state.detail;
    if (!id) return;
    let info;
    try {
      info = await api('GET', '/admin/tenants/' + enc(id));
    } catch (e) {
      if (e.status === 404) {
        closeDetail();
        return;
      }
      handleError(e);
      return;
    }
    if (state.detail !== id) return;
    state.detailInfo = info;
    $('detail').hidden = false;
    setText($('detail-title'), info.tenant_id);
    setText($('detail-state'), info.state);
    $('detail-state').className = 'state ' + info.state;
    setText($('detail-toggle'), info.state === 'disabled' ? 'Enable' : 'Disable');
    const spec = JSON.stringify(info.spec, null, 2);
    setText($('detail-spec'), spec);

    const keys = $('detail-keys').tBodies[0];
    const keyRows = info.keys.map((k) => {
      const tr = document.createElement('tr');
      tr.appendChild(el('td', 'mono', k.key_id));
      tr.appendChild(el('td', 'mono', k.prefix + '\u2026'));
      tr.appendChild(el('td', '', k.created_at || ''));
      const td = el('td');
      const revoke = el('button', 'small', 'Revoke');
      revoke.type = 'button';
      revoke.addEventListener('click', () => revokeKey(info.tenant_id, k.key_id));
      td.appendChild(revoke);
      tr.appendChild(td);
      return tr;
    });
    replaceIfChanged(keys, keyRows);

    const limits = $('detail-limits').tBodies[0];
    const eff = info.effective_limits || {};
    const limitRows = Object.entries(eff.concurrency || {}).map(([name, n]) => {
      const tr = document.createElement('tr');
      tr.appendChild(el('td', 'mono', name));
      tr.appendChild(el('td', 'num', String(n)));
      return tr;
    });
    const rate = document.createElement('tr');
    rate.appendChild(el('td', '', 'requests per second (burst)'));
    rate.appendChild(el('td', 'num', eff.requests_per_second
        ? eff.requests_per_second + ' (' + eff.burst + ')' : 'no limit'));
    limitRows.push(rate);
    replaceIfChanged(limits, limitRows);
  }

  // Replaces a tbody's rows only when their text differs (no flicker).
  function replaceIfChanged(tbody, rows) {
    const now = Array.from(tbody.rows).map((r) => r.textContent).join('\n');
    const next = rows.map((r) => r.textContent).join('\n');
    if (now !== next) tbody.replaceChildren(...rows);
  }

  async function act(fn) {
    try {
      await fn();
      $('app-error').hidden = true;
    } catch (e) {
      handleError(e);
    }
    await loadPage();
    await loadDetail();
  }

  function revokeKey(id, keyId) {
    if (!window.confirm('Revoke key ' + keyId + ' of ' + id + '? Its callers get 401.')) return;
    act(() => api('DELETE', '/admin/tenants/' + enc(id) + '/keys/' + enc(keyId)));
  }

  function showSecret(id, secret) {
    setText($('secret-tenant'), id);
    $('secret-value').value = secret;
    $('secret-copied').hidden = true;
    $('secret-dialog').showModal();
    $('secret-value').select();
  }

  async function copySecret() {
    const input = $('secret-value');
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (e) {
      input.select();
      document.execCommand('copy');
    }
    $('secret-copied').hidden = false;
  }

  // ---- refresh ------------------------------------------------------------

  function startRefresh() {
    stopRefresh();
    state.timer = setInterval(async () => {
      if (document.hidden) return;
      await loadPage();
      await loadDetail();
    }, REFRESH_MS);
  }

  function stopRefresh() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  // ---- wiring ---------------------------------------------------------------

  function wire() {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = $('login-key').value.trim();
      if (key) login(key);
    });
    $('forget').addEventListener('click', () => showLogin(''));

    let filterTimer = null;
    $('filter').addEventListener('input', () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => {
        state.prefix = $('filter').value.trim().toLowerCase();
        state.starts = [''];
        loadPage();
      }, 200);
    });
    $('next').addEventListener('click', () => {
      if (!state.next) return;
      state.starts.push(state.next);
      loadPage();
    });
    $('prev').addEventListener('click', () => {
      if (state.starts.length <= 1) return;
      state.starts.pop();
      loadPage();
    });

    $('create').addEventListener('click', () => {
      $('create-error').hidden = true;
      $('create-id').value = '';
      $('create-dialog').showModal();
    });
    $('create-cancel').addEventListener('click', () => $('create-dialog').close());
    $('create-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const id = $('create-id').value.trim();
      const body = {tenant_id: id};
      const quota = Number($('create-quota').value);
      if ($('create-quota').value !== '' && quota >= 0) body.quota_mb = quota;
      try {
        const created = await api('POST', '/admin/tenants', body);
        $('create-dialog').close();
        showSecret(created.tenant_id, created.api_key);
        await loadPage();
        await openDetail(created.tenant_id);
      } catch (e) {
        if (e.status === 401) return handleError(e);
        $('create-error').textContent = e.message;
        $('create-error').hidden = false;
      }
    });

    $('secret-copy').addEventListener('click', copySecret);
    $('secret-close').addEventListener('click', () => {
      $('secret-value').value = '';
      $('secret-dialog').close();
    });
    // Closed with Escape: the key goes too. The close event comes later than
    // close(): the dialog may show a newer key by then, which stays.
    $('secret-dialog').addEventListener('close', () => {
      if (!$('secret-dialog').open) $('secret-value').value = '';
    });

    $('detail-close').addEventListener('click', closeDetail);
    $('detail-toggle').addEventListener('click', () => {
      const info = state.detailInfo;
      if (!info) return;
      const id = enc(info.tenant_id);
      act(() => info.state === 'disabled' ? api('POST', '/admin/tenants/' + id + '/enable')
                                           : api('DELETE', '/admin/tenants/' + id));
    });
    $('detail-rotate').addEventListener('click', () => {
      const info = state.detailInfo;
      if (!info) return;
      act(async () => {
        const key = await api('POST', '/admin/tenants/' + enc(info.tenant_id) + '/keys');
        showSecret(info.tenant_id, key.api_key);
      });
    });
    $('detail-purge').addEventListener('click', () => {
      const info = state.detailInfo;
      if (!info) return;
      setText($('purge-tenant'), info.tenant_id);
      $('purge-confirm').value = '';
      $('purge-submit').disabled = true;
      $('purge-error').hidden = true;
      $('purge-dialog').showModal();
    });
    $('purge-confirm').addEventListener('input', () => {
      const info = state.detailInfo;
      $('purge-submit').disabled = !info || $('purge-confirm').value !== info.tenant_id;
    });
    $('purge-cancel').addEventListener('click', () => $('purge-dialog').close());
    $('purge-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const info = state.detailInfo;
      if (!info || $('purge-confirm').value !== info.tenant_id) return;
      try {
        await api('POST', '/admin/tenants/' + enc(info.tenant_id) + '/purge');
        $('purge-dialog').close();
        closeDetail();
        await loadPage();
      } catch (e) {
        if (e.status === 401) return handleError(e);
        $('purge-error').textContent = e.message;
        $('purge-error').hidden = false;
      }
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    wire();
    if (state.key) {
      login(state.key);
    } else {
      showLogin('');
    }
  });
})();
