// Package reportload measures how long bpfsnap's HTML report takes to open
// in headless Chromium (cmd/bpfsnap's browser tests and `make bench` use
// it), and writes the synthetic busy-node archive it is measured on.
package reportload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chromedp/chromedp"
)

// Timing is one opening of a report, from the navigation's start (the
// browser's own start-up is not counted).
type Timing struct {
	// FirstPaint is the first contentful paint: the page shows something.
	FirstPaint time.Duration
	// Load is the end of the load event: the page is parsed and every
	// inline script ran, the flame graphs' initialization included.
	Load time.Duration
	// Interactive is the first animation frame after the load event whose
	// task queue let a timer run: the page is drawn and the main thread
	// free to answer a click (load-to-interactive).
	Interactive time.Duration
}

// probe waits for a frame after the load event and a free main thread,
// then reads the page's own clocks (milliseconds from navigation start).
const probe = `new Promise(function (resolve) {
	function done() {
		requestAnimationFrame(function () { setTimeout(function () {
			var nav = performance.getEntriesByType("navigation")[0];
			var paint = performance.getEntriesByName("first-contentful-paint")[0];
			resolve([paint ? paint.startTime : 0, nav.loadEventEnd, performance.now()]);
		}, 0); });
	}
	if (document.readyState === "complete" && performance.getEntriesByType("navigation")[0].loadEventEnd > 0) { done(); }
	else { window.addEventListener("load", function () { setTimeout(done, 0); }); }
})`

// Measure opens the HTML file reps times in one headless Chromium (a fresh
// profile under scratch) and times each opening. The first opening is the
// cold one a reader of a ticket attachment gets.
func Measure(chromium, html, scratch string, reps int) ([]Timing, error) {
	abs, err := filepath.Abs(html)
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp(scratch, "chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.UserDataDir(profile))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTime := context.WithTimeout(ctx, time.Duration(reps)*time.Minute+30*time.Second)
	defer cancelTime()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		return nil, fmt.Errorf("starting %s: %w", chromium, err)
	}
	var out []Timing
	for i := 0; i < reps; i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate("file://"+abs)); err != nil {
			return nil, fmt.Errorf("opening %s: %w", html, err)
		}
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](probe, chromedp.EvalAwaitPromise))
		if err != nil || len(ms) != 3 {
			return nil, fmt.Errorf("timing %s: %v (%v)", html, err, ms)
		}
		d := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
		out = append(out, Timing{FirstPaint: d(ms[0]), Load: d(ms[1]), Interactive: d(ms[2])})
	}
	return out, nil
}
