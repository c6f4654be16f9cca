package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserPage is an HTML file opened in headless Chromium, with what the
// page did that it must not: console errors, requests other than the page
// itself, dialogs (an injected alert()).
type browserPage struct {
	t   *testing.T
	ctx context.Context

	mu                               sync.Mutex
	consoleErrors, requests, dialogs []string
}

// openInChromium opens html (a file) and waits for the element waitFor.
func openInChromium(t *testing.T, chromium, html, waitFor string) *browserPage {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.UserDataDir(filepath.Join(t.TempDir(), "chrome")))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	b := &browserPage{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			b.consoleErrors = append(b.consoleErrors, msg)
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == cdpruntime.ConsoleAPICalledTypeError {
				b.consoleErrors = append(b.consoleErrors, fmt.Sprint(e.Args))
			}
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *page.EventJavascriptDialogOpening:
			b.dialogs = append(b.dialogs, e.Message)
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+html), chromedp.WaitReady(waitFor)); err != nil {
		t.Fatal(err)
	}
	return b
}

// evalInt runs a script in the page and returns its number.
func (b *browserPage) evalInt(js string) int { return evalIn[int](b, js) }

// evalString runs a script in the page and returns its string.
func (b *browserPage) evalString(js string) string { return evalIn[string](b, js) }

func evalIn[T any](b *browserPage, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// checkClean fails the test for console errors, network requests other
// than the page itself, dialogs, and elements or handlers injected by
// workload strings.
func (b *browserPage) checkClean() {
	b.t.Helper()
	injected := b.evalInt(`document.querySelectorAll("img, iframe, object, embed, foreignObject, [onload], [onerror], [onmouseover], svg svg").length`)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.consoleErrors) > 0 {
		b.t.Errorf("console errors: %v", b.consoleErrors)
	}
	for _, u := range b.requests {
		if !strings.HasPrefix(u, "file://") {
			b.t.Errorf("network request to %s", u)
		}
	}
	if len(b.requests) != 1 {
		b.t.Errorf("requests: %v (want only the page itself)", b.requests)
	}
	if len(b.dialogs) > 0 {
		b.t.Errorf("injected script ran: dialogs %v", b.dialogs)
	}
	if injected != 0 {
		b.t.Errorf("%d injected elements or handlers in the DOM", injected)
	}
}
