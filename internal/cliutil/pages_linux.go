package cliutil

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// calls of them faults back in. No other mapping is touched.
// Writable mappings (data, bss, the heap) are left alone: their contents
// would be lost; so is a read-only one with a page of its own, in memory
// or in swap (see releasable). Errors are ignored: this only lowers the resident size.
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
		exe := m.inode == st.Ino && m.dev == devNumbers(st.Dev)
		if !m.releasable() || !(exe || sharedObject(m.path)) {
			continue
		}
		syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_RANDOM)
		if exe {
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

// releasable reports whether dropping m's pages loses nothing: readable,
// not writable, private, of a file, and with no page of its own, neither
// in memory (Anonymous) nor swapped out (Swap). A RELRO segment (the GOT)
// is read-only but was written by the loader: its copied pages are
// anonymous, or in swap once reclaimed, and dropping them would undo the
// relocations.
func (m mapping) releasable() bool {
	return m.end > m.start && len(m.perms) == 4 && m.perms[0] == 'r' && m.perms[1] != 'w' && m.perms[3] == 'p' &&
		m.inode != 0 && m.anonKiB == 0 && m.swapKiB == 0
}

// sharedObject reports whether path names an ELF shared library (libc.so.6,
// ld-linux-x86-64.so.2): the only mappings besides the executable's that
// ReleaseExecutablePages touches (not, say, a device's or a module's
// mapping whose pages might not fault back in).
func sharedObject(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	base := path[strings.LastIndexByte(path, '/')+1:]
	return strings.HasSuffix(base, ".so") || strings.Contains(base, ".so.")
}

// devNumbers is dev as smaps prints it: "fe:00" (major:minor, hex).
func devNumbers(dev uint64) string {
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	return fmt.Sprintf("%02x:%02x", major, minor)
}

// madvPageout is MADV_PAGEOUT (Linux 5.4), which package syscall lacks.
const madvPageout = 21

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end uintptr
	perms      string // "r-xp"
	dev        string // "fe:00"
	inode      uint64
	path       string
	anonKiB    int64 // the mapping's private anonymous (copied-on-write) pages in memory; -1 unread
	swapKiB    int64 // and in swap; -1 unread
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
			m := mapping{start: uintptr(start), end: uintptr(end), perms: string(f[1]), dev: string(f[3]), inode: ino, anonKiB: -1, swapKiB: -1}
			if len(f) > 5 {
				m.path = string(bytes.Join(f[5:], []byte(" ")))
			}
			out = append(out, m)
			continue
		}
		if len(out) == 0 || len(f) < 2 {
			continue
		}
		var field *int64
		switch string(f[0]) {
		case "Anonymous:":
			field = &out[len(out)-1].anonKiB
		case "Swap:":
			field = &out[len(out)-1].swapKiB
		default:
			continue
		}
		n, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return out
		}
		*field = n
	}
	return out
}
