package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// The flame graph benchmark registers itself so that adding it touched no
// shared line of main.go.
func init() {
	benchmarks = append(benchmarks, benchmark{"flame graph of 1M samples", benchFlameGraph})
}

var flameBenchLine = regexp.MustCompile(`BenchmarkFlameGraph/(\w+)-\d+\s+\d+\s+(\d+) ns/op\s+(\d+) svg-bytes`)

// benchFlameGraph runs report's BenchmarkFlameGraph (one million samples
// over 5000 stacks): "archive" reads and joins the Parquet tables, folds and
// writes the SVG; "render" starts from the loaded profile.
func benchFlameGraph(env *Env) ([]Row, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkFlameGraph$",
		"-benchtime", fmt.Sprintf("%dx", max(env.Reps, 1)), "./report/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %v: %s", err, out)
	}
	var rows []Row
	for _, m := range flameBenchLine.FindAllStringSubmatch(string(out), -1) {
		ns, _ := strconv.ParseFloat(m[2], 64)
		size, _ := strconv.ParseFloat(m[3], 64)
		row := Row{Name: "flame graph, 1M samples (" + m[1] + ")",
			Result: fmt.Sprintf("%.0f ms, SVG %.1f MB", ns/1e6, size/1e6),
			Note:   "go test -bench BenchmarkFlameGraph ./report/ (mean of " + strconv.Itoa(max(env.Reps, 1)) + " runs)"}
		if m[1] == "archive" {
			row.Goal, row.Met = "< 1 s", yesNo(ns < 1e9)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no benchmark lines in: %s", out)
	}
	return rows, nil
}
