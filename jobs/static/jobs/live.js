/*
 * Live pages of the jobs admin (the dashboard, a job's page, the workers page).
 *
 * Every few seconds, while its "Live" box is ticked and the tab is visible, the page asks its
 * own URL again and swaps in the fresh copies of the parts it names (data-live-regions, CSS
 * selectors matched in order); the rest of the page, a half-typed form included, stays as it
 * is. No framework, nothing from another host: one request to the server that drew the page.
 * The box's state is remembered per kind of page (localStorage).
 */
(() => {
  "use strict";
  const bar = document.querySelector("[data-live]");
  if (!bar) return;
  const toggle = bar.querySelector("input[type=checkbox]");
  const status = bar.querySelector(".job-live-status");
  const key = `jobs-live:${bar.dataset.live}`;
  const interval = Number(bar.dataset.liveInterval) * 1000;
  const selectors = bar.dataset.liveRegions;
  let timer = null;
  let busy = false;

  const stored = window.localStorage.getItem(key);
  toggle.checked = stored === null ? bar.dataset.liveDefault === "on" : stored === "on";

  const schedule = (delay = interval) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, delay);
  };

  const swap = (fresh) => {
    const old = document.querySelectorAll(selectors);
    const now = fresh.querySelectorAll(selectors);
    if (old.length !== now.length) return false; // the page changed shape: reload it whole
    old.forEach((region, index) => region.replaceWith(document.importNode(now[index], true)));
    return true;
  };

  async function refresh() {
    if (!toggle.checked || document.hidden || busy) return schedule();
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Jobs-Live": "1" },
      });
      if (!response.ok || response.redirected) throw new Error(`HTTP ${response.status}`);
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      if (!swap(fresh)) {
        window.location.reload();
        return;
      }
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove("job-live-failed");
    } catch (error) {
      status.textContent = `not updated: ${error.message}`;
      status.classList.add("job-live-failed");
    } finally {
      busy = false;
      schedule();
    }
  }

  toggle.addEventListener("change", () => {
    window.localStorage.setItem(key, toggle.checked ? "on" : "off");
    status.textContent = toggle.checked ? "" : "paused";
    schedule(toggle.checked ? 0 : interval);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && toggle.checked) schedule(0);
  });
  schedule();
})();
