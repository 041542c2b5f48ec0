package cliutil

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// ReleaseExecutablePages drops this process's resident pages of its own
// executable's read-only mappings (text, rodata, pclntab), for a long
// command whose peak resident size matters (`upkit delta apply`, which a
// device-sized machine may run). Start-up touches the 21 MB binary all
// over, and the kernel maps a whole page-cache folio or fault-around
// window at each fault, so 10 to 16 MB of it are resident before main
// runs, though the command needs a small part of it.
//
// Four steps on those mappings: MADV_RANDOM (no readahead when their
// pages fault back in); MADV_PAGEOUT, which unmaps their page-cache
// folios and evicts those no other process maps, in one step inside the
// kernel; MADV_DONTNEED for what is left (a private mapping that was
// never written loses nothing); and POSIX_FADV_DONTNEED on the
// executable's file for folios the kernel could not page out. Evicting
// matters as much as unmapping: the page cache holds the binary in large
// folios (up to 2 MiB), a kernel that maps a whole folio at a fault
// (Linux 6.18 does) would bring a folio back entire for the first
// instruction run in it, and the instructions run between the unmapping
// and a later eviction (this function's own, the runtime's) would keep
// their folios. Evicted, what is needed comes back a page at a time
// (other processes running the same binary read it again from disk).
// MADV_PAGEOUT needs Linux 5.4 and, on file pages, a caller that owns the
// binary or may write it; without it the other steps still apply.
// The read-only mappings of the shared libraries (libc and the loader,
// which a cgo build maps: 1.4 MiB resident after start-up) are only
// unmapped, with MADV_DONTNEED: other processes map the same pages, so
// they are neither paged out nor evicted, and what this process still
// calls of them faults back in.
// Writable mappings (data, bss, the heap) are left alone: their contents
// would be lost. Errors are ignored: this only lowers the resident size.
// It returns the bytes of mappings released.
func ReleaseExecutablePages() int64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return 0
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0
	}
	var released int64
	for _, m := range parseSmaps(smaps) {
		// Readable, not writable, private, of a file (the executable or
		// a shared library), and with no page of its own (Anonymous: 0):
		// a RELRO segment (GOT) is read-only but was written by the
		// loader, and dropping it would undo the relocations.
		if m.perms[0] != 'r' || m.perms[1] == 'w' || m.perms[3] != 'p' || m.inode == 0 || m.anonKiB != 0 || m.end <= m.start {
			continue
		}
		syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_RANDOM)
		if m.inode == st.Ino {
			syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, madvPageout)
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); e == 0 {
			released += int64(m.end - m.start)
		}
	}
	// The page cache holds the binary in large folios, and a fault maps
	// the whole folio: evict them (no longer mapped here).
	if f, err := os.Open("/proc/self/exe"); err == nil {
		syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4 /* POSIX_FADV_DONTNEED */, 0, 0)
		f.Close()
	}
	return released
}

// madvPageout is MADV_PAGEOUT (Linux 5.4), which package syscall lacks.
const madvPageout = 21

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end uintptr
	perms      string // "r-xp"
	inode      uint64
	anonKiB    int64 // the mapping's private anonymous (copied-on-write) pages
}

// parseSmaps reads the mappings of /proc/PID/smaps; a line it cannot read
// ends the list there.
func parseSmaps(b []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := bytes.Cut(f[0], []byte("-")); ok && len(f) >= 5 {
			// start-end perms offset dev inode [path]
			start, err1 := strconv.ParseUint(string(lo), 16, 64)
			end, err2 := strconv.ParseUint(string(hi), 16, 64)
			ino, err3 := strconv.ParseUint(string(f[4]), 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || len(f[1]) != 4 {
				return out
			}
			out = append(out, mapping{start: uintptr(start), end: uintptr(end), perms: string(f[1]), inode: ino, anonKiB: -1})
			continue
		}
		if len(out) > 0 && len(f) >= 2 && string(f[0]) == "Anonymous:" {
			n, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return out
			}
			out[len(out)-1].anonKiB = n
		}
	}
	return out
}
