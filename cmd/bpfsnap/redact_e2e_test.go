//go:build linux

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// holderSrc burns a little CPU (so the capture has samples to export) and
// sleeps HOLD_MS milliseconds, whatever its arguments: it stands for the
// clients of the corpus under their real names.
const holderSrc = `#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(void) {
	const char *ms = getenv("HOLD_MS");
	volatile unsigned long x = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 100000; i++) x += i;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 60);
	usleep((ms ? atoi(ms) : 300) * 1000);
	return 0;
}
`

// redactScript runs real processes with secrets in their argv, as a CI job
// or a cron script would: every secret carries the tag SEKRET.
const redactScript = `d=%[1]s
$d/migrate --token abcTOKEN9876SEKRET1 postgres://app:S3cr3tPassSEKRET2@db:5432/x
$d/dbclient --password=Hunter2secretXSEKRET3
$d/mysql -uroot -pSEKRET4 shop
$d/redis-cli -h cache -a SEKRET5 ping
$d/curl -sS -H "Authorization: Bearer SEKRET6" -u deploy:SEKRET7 https://api.example.com/v1
env DB_PASSWORD=SEKRET8 $d/worker --api-key=SEKRET9 --port 8080
$d/git clone https://x-access-token:SEKRET10@github.com/org/repo.git
sh -c "$d/mysql -pSEKRET11 shop; true"
$d/java -Djavax.net.ssl.keyStorePassword=SEKRET12 -jar app.jar
$d/app --config-json '{"user": "bob", "password": "SEKRET13"}'
sleep 0.5
`

// Secrets on command lines of real processes (seen by the /proc scan, by
// exec events, and in -- COMMAND itself) never reach the archive's bytes,
// any decoded table, inspect, analyze, the report or the exports; the
// manifest counts them; --keep-cmdline keeps them.
func TestRedactedCommandLines(t *testing.T) {
	testenv.RequireBPF(t)
	gcc := testenv.RequireTool(t, "gcc")
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	holder := filepath.Join(dir, "holder")
	src := filepath.Join(dir, "holder.c")
	os.WriteFile(src, []byte(holderSrc), 0o644)
	if out, err := exec.Command(gcc, "-O1", "-fno-omit-frame-pointer", "-o", holder, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	for _, name := range []string{"migrate", "dbclient", "mysql", "redis-cli", "curl", "worker", "git", "java", "app"} {
		if err := os.Symlink(holder, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "run.sh")
	os.WriteFile(script, []byte(fmt.Sprintf(redactScript, dir)), 0o755)

	for _, keep := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprintf("keep-%v", keep))
		os.Mkdir(out, 0o755)
		// Already running when the capture starts: the /proc scan's rows.
		pre := exec.Command("/bin/sh", "-c", fmt.Sprintf(
			"%[1]s/migrate --token SEKRET20 postgres://app:SEKRET21@db/x & %[1]s/app --client-secret SEKRET22 & wait", dir))
		pre.Env = append(os.Environ(), "HOLD_MS=30000", "API_TOKEN=SEKRET30ENV")
		if err := pre.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		arc := filepath.Join(out, "secrets.bpfsnap")
		args := []string{"capture", "-p", "cpu", "--freq", "999", "-d", "20s", "-o", arc,
			"--pid", fmt.Sprint(pre.Process.Pid)}
		if keep {
			args = append(args, "--keep-cmdline")
		}
		args = append(args, "--", "/bin/sh", script, "--token", "SEKRET40CMD", "--password=SEKRET41CMD")
		capture := exec.Command(bin, args...)
		capture.Env = append(os.Environ(), "SESSION_SECRET=SEKRET31ENV")
		msg, err := capture.CombinedOutput()
		exec.Command("pkill", "-KILL", "-P", fmt.Sprint(pre.Process.Pid)).Run()
		pre.Process.Kill()
		pre.Wait()
		if err != nil {
			t.Fatalf("capture: %v: %s", err, msg)
		}

		texts := archiveStrings(t, arc)
		for _, v := range [][]string{
			{"inspect", "--json", arc}, {"inspect", arc}, {"analyze", "--json", arc}, {"analyze", arc},
			{"export", "--format", "json", arc}, {"export", "--format", "folded", arc},
			{"flamegraph", "--per-pid", arc},
		} {
			texts = append(texts, run0(t, bin, v...))
		}
		pprofFile := filepath.Join(out, "cpu.pb.gz")
		run0(t, bin, "export", "--format", "pprof", "-o", pprofFile, arc)
		texts = append(texts, gunzipFile(t, pprofFile))
		html := filepath.Join(out, "report.html")
		run0(t, bin, "report", "-o", html, arc)
		page, _ := os.ReadFile(html)
		texts = append(texts, string(page))

		// The processes are there, so the search below means something.
		for _, s := range []string{"--token", "postgres://", "-Djavax.net.ssl.keyStorePassword=", "redis-cli -h cache", "--client-secret", "run.sh"} {
			if !containsAny(texts[1:], s) {
				t.Errorf("keep=%v: %q is in no table or output: the secret search would prove nothing", keep, s)
			}
		}
		// Environment variables are never captured, kept or not.
		for _, s := range []string{"SEKRET30ENV", "SEKRET31ENV"} {
			if containsAny(texts, s) {
				t.Errorf("keep=%v: environment value %s reached the archive or an output", keep, s)
			}
		}
		secret := regexp.MustCompile(`SEKRET\d+(CMD)?`)
		found := map[string]bool{}
		for _, tx := range texts {
			for _, m := range secret.FindAllString(tx, -1) {
				found[m] = true
			}
		}
		a, err := formats.Open(arc)
		if err != nil {
			t.Fatal(err)
		}
		m := a.Manifest()
		a.Close()
		redacted := m.Drops["process.cmdline_redacted"]
		if !keep {
			if len(found) > 0 {
				t.Errorf("secrets reached the archive or an output: %v", keys(found))
				for _, tx := range texts {
					if i := secret.FindStringIndex(tx); i != nil {
						t.Logf("e.g. …%q…", tx[max(0, i[0]-120):min(len(tx), i[1]+40)])
						break
					}
				}
			}
			if !containsAny(texts[1:], "<redacted>") {
				t.Errorf("no <redacted> marker in the tables")
			}
			// 3 scan secrets, 2 in -- COMMAND (manifest and its row),
			// 14 in the script's commands; rows written twice count twice.
			if redacted < 19 {
				t.Errorf("manifest counts %d redacted values, want at least 19", redacted)
			}
			if m.Options["keep_cmdline"] != "" {
				t.Errorf("options say keep_cmdline=%q", m.Options["keep_cmdline"])
			}
			t.Logf("redacted: %d values counted; %d texts searched", redacted, len(texts))
			continue
		}
		for _, s := range []string{"SEKRET1", "SEKRET2", "SEKRET3", "SEKRET4", "SEKRET5", "SEKRET6", "SEKRET7", "SEKRET8", "SEKRET9",
			"SEKRET10", "SEKRET11", "SEKRET12", "SEKRET13", "SEKRET20", "SEKRET21", "SEKRET22", "SEKRET40CMD", "SEKRET41CMD"} {
			if !found[s] {
				t.Errorf("--keep-cmdline: %s is missing from the archive", s)
			}
		}
		if redacted != 0 || m.Options["keep_cmdline"] != "true" {
			t.Errorf("--keep-cmdline: %d redactions counted, options %v", redacted, m.Options)
		}
	}
}

func gunzipFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	js, _ := json.Marshal(ks)
	return string(js)
}
