package analyze

import "testing"

func TestResolveK8s(t *testing.T) {
	procs := []Process{{PID: 1}, {PID: 10, Namespace: "shop", Pod: "a"}, {PID: 11, Namespace: "shop", Pod: "b"}, {PID: 12, Namespace: "db", Pod: "a"}}
	f := Filter{Pod: "shop/a"}
	if err := ResolveK8s(&f, procs); err != nil || len(f.PIDs) != 1 || f.PIDs[0] != 10 {
		t.Fatalf("%v %v", f.PIDs, err)
	}
	f = Filter{Namespace: "shop"}
	if err := ResolveK8s(&f, procs); err != nil || len(f.PIDs) != 2 {
		t.Fatalf("%v %v", f.PIDs, err)
	}
	f = Filter{Pod: "a", PIDs: []uint32{12}}
	if err := ResolveK8s(&f, procs); err != nil || len(f.PIDs) != 1 || f.PIDs[0] != 12 {
		t.Fatalf("%v %v", f.PIDs, err)
	}
	if err := ResolveK8s(&Filter{Namespace: "nope"}, procs); err == nil {
		t.Fatal("expected error")
	}
}
