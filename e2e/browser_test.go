package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clowdr/realtime/internal/testenv"
)

// chromiumPath is Debian's chromium.
const chromiumPath = "/usr/bin/chromium"

// browserWithin bounds the whole browser session.
const browserWithin = 60 * time.Second

// newBrowser starts a headless chromium with a fresh profile and returns a
// chromedp context for one tab; everything ends with the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Unavailable(t, "chromium is not installed at %s (apt-get install chromium)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), browserWithin)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser() // closes the browser and waits for it
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// TestAdminPageBrowser logs in to the admin page in a real browser and waits
// until the live table shows the page a real client is on.
func TestAdminPageBrowser(t *testing.T) {
	t.Parallel()
	requireNode(t)
	secret := "admin-" + randHex(t, 8)
	s := launch(t, serverOpts{
		// A short heartbeat, so the instance's socket count is current too.
		args: []string{"--set", "directory.conferences=demo", "--set", "redis.heartbeat_interval=1s"},
		env:  map[string]string{"RT_SECRETS__ADMIN": secret},
	})
	page := "/conference/demo/room/" + randHex(t, 4)
	key := "PresenceList:" + listIDOf(page)
	startHolder(t, s.URL, []holdSpec{{User: "alice", Pages: []string{page}}})

	ctx := newBrowser(t)
	err := chromedp.Do(ctx,
		// The page area itself is 1280x800 (the window's is smaller by its
		// decorations), so the screenshot is too.
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(s.URL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#secret")),
		chromedp.SendKeys(chromedp.CSS("#secret"), "not-the-secret"),
		chromedp.Submit(chromedp.CSS("#secret")),
		chromedp.WaitVisible(chromedp.CSS("p.error")),
	)
	if err != nil {
		t.Fatalf("admin login with a wrong secret: %v", err)
	}
	wrongMsg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("p.error")))
	if err != nil {
		t.Fatalf("read the login error: %v", err)
	}
	if strings.TrimSpace(wrongMsg) != "Wrong secret." {
		t.Fatalf("wrong secret shows %q, want %q", wrongMsg, "Wrong secret.")
	}

	// The row of the client's page (key and a count of 1), and the tiles:
	// one instance with the client's one socket.
	rowJS := fmt.Sprintf(`Array.from(document.querySelectorAll("#pages tr")).some(tr => {
		const td = tr.querySelectorAll("td");
		return td.length === 2 && td[0].textContent === %q && td[1].textContent === "1";
	}) && document.getElementById("t-instances").textContent === "1"
	   && document.getElementById("t-sockets").textContent === "1"
	   && document.getElementById("t-users").textContent === "1"`, key)
	err = chromedp.Do(ctx,
		// The refusal re-served the login page: its field is empty again.
		chromedp.SendKeys(chromedp.CSS("#secret"), secret),
		chromedp.Submit(chromedp.CSS("#secret")),
		chromedp.WaitVisible(chromedp.CSS("#pages")),
		chromedp.Func(func(c context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](rowJS, chromedp.WithPollingTimeout(20*time.Second))(c, tg)
			return err
		}),
	)
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("admin page never showed %s with 1 user: %v\npage:\n%.4000s", key, err, html)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "realtime admin" {
		t.Errorf("title %q (err %v), want %q", title, err, "realtime admin")
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
	if err != nil || !strings.HasPrefix(status, "live") {
		t.Errorf("status pill %q (err %v), want live", status, err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "admin.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	if dir := os.Getenv("RT_E2E_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshot dir: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "admin.png"), png, 0o644); err != nil {
			t.Fatalf("copy screenshot: %v", err)
		}
		t.Logf("screenshot: %s", filepath.Join(dir, "admin.png"))
	}
}
