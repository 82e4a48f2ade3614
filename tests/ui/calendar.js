// Reads the freeze banner and the waves' gates of the fleet web view in headless
// Chromium for tests/web_view.rs.
//
//   node tests/ui/calendar.js URL SCREENSHOT_DIR
//
// NODE_PATH must hold playwright-core (tests/ui/setup prints the directory);
// CHROMIUM names the browser. Prints one JSON line: {"banner": text or null,
// "gates": [text of each wave's gate], "consoleErrors": [...]}, and writes
// calendar.png. Any failure prints {"error": ...} and exits 1.
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const [url, outDir] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(url + "#app=web", { waitUntil: "load" });
    await page.waitForSelector("[data-wave] [data-cluster]", { timeout: 10000 });
    await page.waitForSelector("#freeze:not([hidden])", { timeout: 10000 });
    const seen = await page.evaluate(() => ({
      banner: document.getElementById("freeze").innerText,
      gates: [...document.querySelectorAll("[data-wave] .gate")].map((g) => g.innerText),
    }));
    await page.screenshot({ path: path.join(outDir, "calendar.png"), fullPage: true });
    process.stdout.write(JSON.stringify({ ...seen, consoleErrors }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + "\n");
  process.exit(1);
});
