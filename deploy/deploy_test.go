package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type job struct {
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool   `yaml:"hostPID"`
				NodeName   string `yaml:"nodeName"`
				Containers []struct {
					Args            []string `yaml:"args"`
					SecurityContext struct {
						Privileged   bool `yaml:"privileged"`
						Capabilities struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						ReadOnly  bool   `yaml:"readOnly"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func parseJob(t *testing.T, data []byte) job {
	var j job
	if err := yaml.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJobManifest(t *testing.T) {
	data, err := os.ReadFile("kubernetes/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := parseJob(t, data).Spec.Template.Spec
	if !s.HostPID || len(s.Containers) != 1 {
		t.Fatalf("hostPID=%v containers=%d", s.HostPID, len(s.Containers))
	}
	c := s.Containers[0]
	if c.SecurityContext.Privileged || len(c.SecurityContext.Capabilities.Drop) != 1 || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("security context: %+v", c.SecurityContext)
	}
	allowed := map[string]bool{"BPF": true, "PERFMON": true, "SYS_PTRACE": true, "SYS_ADMIN": true, "SYS_RESOURCE": true, "DAC_READ_SEARCH": true}
	for _, cp := range c.SecurityContext.Capabilities.Add {
		if !allowed[cp] {
			t.Errorf("unexpected capability %s", cp)
		}
	}
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(m.MountPath, "/host") && !m.ReadOnly {
			t.Errorf("host mount %s is writable", m.MountPath)
		}
	}
	// Every capability line carries its justification.
	for _, cp := range c.SecurityContext.Capabilities.Add {
		found := false
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "- "+cp+" ") && strings.Contains(l, "#") {
				found = true
			}
		}
		if !found {
			t.Errorf("capability %s has no comment", cp)
		}
	}
}

// TestPluginCommands runs the plugin with a fake kubectl that records its
// arguments and answers like a cluster would.
func TestPluginCommands(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	fake := `#!/bin/sh
echo "$*" >> "` + log + `"
case "$1 $2" in
  "get pod") case "$*" in *nodeName*) printf node-7 ;; *) printf bpfsnap-job-pod ;; esac ;;
  "apply -f") cat > "` + dir + `/applied.yaml" ;;
  "cp "*) echo archive > "$3" ;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "got.bpfsnap")
	cmd := exec.Command("sh", "./kubectl-bpfsnap", "pod/checkout-1", "-n", "shop", "--duration", "10s", "-o", out, "--image", "reg/bpfsnap:t")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	logData, _ := os.ReadFile(log)
	calls := strings.Split(strings.TrimSpace(string(logData)), "\n")
	want := []string{"get pod checkout-1 -n shop -o jsonpath={.spec.nodeName}", "apply -f -", "wait pod -n shop", "get pod -n shop -l", "exec -n shop bpfsnap-job-pod -- test -e /out/done",
		"cp shop/bpfsnap-job-pod:/out/capture.bpfsnap " + out, "exec -n shop bpfsnap-job-pod -- touch /out/copied", "delete job"}
	if len(calls) != len(want) {
		t.Fatalf("calls:\n%s", logData)
	}
	for i, w := range want {
		if !strings.HasPrefix(calls[i], w) {
			t.Errorf("call %d = %q, want prefix %q", i, calls[i], w)
		}
	}
	applied, err := os.ReadFile(filepath.Join(dir, "applied.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(applied), "__") {
		t.Fatalf("unrendered placeholder in\n%s", applied)
	}
	s := parseJob(t, applied).Spec.Template.Spec
	if s.NodeName != "node-7" || !strings.Contains(s.Containers[0].Args[0], `--pod "shop/checkout-1" --duration "10s"`) {
		t.Fatalf("rendered job: node %q args %q", s.NodeName, s.Containers[0].Args)
	}
	if b, _ := os.ReadFile(out); string(b) != "archive\n" {
		t.Fatal("archive not copied")
	}
	// Hostile names are refused before any kubectl call.
	bad := exec.Command("sh", "./kubectl-bpfsnap", "pod/x;rm", "-n", "shop")
	bad.Env = cmd.Env
	if err := bad.Run(); err == nil {
		t.Fatal("invalid pod name accepted")
	}
}
