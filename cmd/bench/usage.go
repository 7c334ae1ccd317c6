package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// usage is a CPU sample: this process's (getrusage) and, when its pid was
// given, the agent's (/proc/<pid>/stat), both in seconds of user+system time.
type usage struct {
	at       int64 // ns on the run's clock
	self     float64
	agent    float64
	agentErr error
	// the agent's read and write system calls so far (/proc/<pid>/io);
	// -1 when unreadable
	agentReads, agentWrites int64
}

func (r *run) sample(at int64) usage {
	u := usage{at: at, self: selfCPU()}
	if r.cfg.agentPID > 0 {
		u.agent, u.agentErr = procCPU(r.cfg.agentPID)
		u.agentReads, u.agentWrites = procSyscalls(r.cfg.agentPID)
	}
	return u
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns utime+stime of a process, in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: count fields after
	// its closing parenthesis, where field 3 (state) starts.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64) // field 14
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// procHWM returns the peak resident set size (VmHWM) of a process in KiB.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// procSyscalls returns the read and write system calls a process made so
// far (syscr and syscw of /proc/<pid>/io), or -1, -1 if they cannot be read.
func procSyscalls(pid int) (reads, writes int64) {
	reads, writes = -1, -1
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return
}
