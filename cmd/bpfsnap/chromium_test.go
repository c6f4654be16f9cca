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

// browserPage is a report opened in headless Chromium through the DevTools
// protocol, which records every console error, network request and
// JavaScript dialog (an injected alert()) while tests drive the page.
type browserPage struct {
	t   *testing.T
	ctx context.Context

	mu                               sync.Mutex
	consoleErrors, requests, dialogs []string
}

// openInChromium opens the page at html and waits until the element
// waitFor is ready. The browser is closed when the test ends.
func openInChromium(t *testing.T, chromium, html, waitFor string) *browserPage {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.UserDataDir(filepath.Join(t.TempDir(), "chrome")))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	p := &browserPage{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch e := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			p.consoleErrors = append(p.consoleErrors, msg)
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == cdpruntime.ConsoleAPICalledTypeError {
				p.consoleErrors = append(p.consoleErrors, fmt.Sprint(e.Args))
			}
		case *network.EventRequestWillBeSent:
			p.requests = append(p.requests, e.Request.URL)
		case *page.EventJavascriptDialogOpening:
			p.dialogs = append(p.dialogs, e.Message)
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
	return p
}

// evalInt runs a JavaScript expression in the page and returns its value.
func (p *browserPage) evalInt(js string) int {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[int](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

func (p *browserPage) evalString(js string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// checkClean fails the test if the page logged an error, asked the network
// for anything but itself, or ran an injected dialog; and if any element
// or handler a hostile name could inject is in the DOM.
func (p *browserPage) checkClean() {
	p.t.Helper()
	injected := p.evalInt(`document.querySelectorAll("img, iframe, object, embed, foreignObject, [onload], [onerror], [onmouseover], svg svg").length`)
	if injected != 0 {
		p.t.Errorf("%d injected elements or handlers in the DOM", injected)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.consoleErrors) > 0 {
		p.t.Errorf("console errors: %v", p.consoleErrors)
	}
	for _, u := range p.requests {
		if !strings.HasPrefix(u, "file://") {
			p.t.Errorf("network request to %s", u)
		}
	}
	if len(p.requests) != 1 {
		p.t.Errorf("requests: %v (want only the page itself)", p.requests)
	}
	if len(p.dialogs) > 0 {
		p.t.Errorf("injected script ran: dialogs %v", p.dialogs)
	}
}
