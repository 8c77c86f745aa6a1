package stdio

import "os"

// Process identifies a process precisely enough that a later gateway can
// tell whether a pid still names it.
type Process struct {
	Pid  int
	Pgid int
	// Start is when the process started, in clock ticks after boot
	// (/proc/PID/stat field 22). With Boot it tells the process from a
	// later one that was given the same pid.
	Start uint64
	// Boot is the kernel's boot id.
	Boot string
}

// Recorder is told about every process an Upstream spawns, so that a
// gateway started after a crash can end what the crashed one left
// running (Reap). Spawned is called once the process runs, before Open
// (or Probe) returns it; Ended once it was reaped and what was left of its
// process group was killed. Implementations must be safe for concurrent
// use and should not block for long: a spawn waits for Spawned.
type Recorder interface {
	Spawned(p Process)
	Ended(p Process)
}

// UseRecorder sets the Recorder of the processes u spawns from now on;
// call it before the first Open. Without one, nothing is recorded. It has
// no effect where processes cannot be identified (systems other than
// Linux).
func (u *Upstream) UseRecorder(r Recorder) {
	u.rec.Store(&recorderBox{r})
}

type recorderBox struct{ r Recorder }

func (u *Upstream) recorder() Recorder {
	if b := u.rec.Load(); b != nil {
		return b.r
	}
	return nil
}

// Self describes the calling process (the gateway), to tell later whether
// it is still alive; ok is false where processes cannot be identified.
func Self() (p Process, ok bool) {
	p, err := identify(os.Getpid())
	return p, err == nil
}
