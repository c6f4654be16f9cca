package analyze

import (
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Inspection is what `inspect` shows of an archive: its manifest, its
// tables and its processes, without running the analyses. The JSON field
// names are part of the CLI's contract.
type Inspection struct {
	// Path is the archive as opened (the .bpfsnap file or a .partial
	// directory); not part of the JSON document.
	Path      string              `json:"-"`
	Manifest  *formats.Manifest   `json:"manifest"`
	Tables    []formats.TableInfo `json:"tables"`
	Processes []InspectedProcess  `json:"processes"`
}

// InspectedProcess is a process with its start and exit as wall-clock
// times.
type InspectedProcess struct {
	Process
	StartTime string `json:"start_time,omitempty"`
	ExitTime  string `json:"exit_time,omitempty"`
}

// Inspect opens an archive and reads what inspect shows.
func Inspect(path string) (*Inspection, error) {
	a, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	tables, err := a.Tables()
	if err != nil {
		return nil, err
	}
	procs, err := Processes(a)
	if err != nil {
		return nil, err
	}
	m := a.Manifest()
	in := &Inspection{Path: a.Path(), Manifest: m, Tables: tables, Processes: make([]InspectedProcess, 0, len(procs))}
	for _, p := range procs {
		ip := InspectedProcess{Process: p}
		if p.StartNs != 0 {
			ip.StartTime = m.Window.WallTime(p.StartNs).Format(time.RFC3339Nano)
		}
		if p.Exited {
			ip.ExitTime = m.Window.WallTime(p.ExitNs).Format(time.RFC3339Nano)
		}
		in.Processes = append(in.Processes, ip)
	}
	return in, nil
}
