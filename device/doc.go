// Package device is the update engine that device firmware links. It decides
// whether an update may be installed, installs it without ever leaving the
// device unbootable, and never lets it go back to an older release.
//
// # Flow
//
//	d, _ := device.New(device.Config{Store: ..., Slots: ..., Hardware: "gw-100", StagingDir: ...})
//	d.Provision(ctx, embeddedRoot, now)          // once: the trust root the device starts from
//	d.Adopt(ctx, factoryRelease, nil, map[string]string{"rootfs": device.SlotA}, now) // once, optional: what it was flashed with
//	plan, err := d.CheckAndRecord(ctx, releaseEnvelope, rootChain, now) // every check, before any download
//	res, err := d.Install(ctx, source, plan, now) // fetch, verify, write the inactive slots: pending
//	// reboot into the new slots; if healthy:
//	d.Commit(ctx)                                 // counters and versions advance, slots switch
//	// else (boot count exceeded, see RecordBoot):
//	d.Rollback(ctx)
//
// # What the device accepts
//
// Check and CheckAndRecord (and Install again, since state may change in
// between) refuse a release unless: the root chain shipped with it rotates
// validly from the stored trust root; a threshold of the root's release keys signed it; it
// has not expired, judged against the later of the device clock and the
// newest release creation time the device has seen (a device without a
// clock still refuses what expired before something it saw); it is not
// older than the newest release seen (ErrFreeze) nor of a lower version than
// the committed one (ErrRollback); it is for the device's product
// (ErrProduct) and hardware (ErrHardware); and no image's security version
// is lower than its component's stored counter (ErrSecurityVersion; equal is
// allowed, to reinstall). Signature and expiry errors are manifest's
// (manifest.ErrThreshold, ErrUnknownKey, ErrBadSignature, ErrExpired, ...)
// and pass through for errors.Is. The checks run in three stages, as
// go-tuf separates trusted metadata from the updater: trust verification
// (root chain, release signatures and expiry), policy (product, rollback,
// freeze, hardware, security versions, limits) and planning (delta or full
// package per component). Check writes nothing; CheckAndRecord and Install
// keep what was verified and may not be forgotten (a newer root, the
// newest creation time seen).
//
// Install fetches only blobs the verified release lists for the plan's
// components (ErrNotListed otherwise: mix-and-match), reads at most their
// signed size (ErrTooLong, ErrTruncated), checks their sha256 (ErrDigest),
// checks that a delta's base is the committed image (ErrBaseMismatch, before
// any output), writes only the inactive slot and reads it back against the
// signed payload digest. A package's own signature is not required: the
// release, signed by a threshold of release keys, pins each package by
// digest, which is the stronger guarantee; its signed metadata must match
// the release's entry.
//
// Deltas published after a release (OCI referrers) are not in the signed
// release; Plan.UseDelta accepts one anyway, because nothing about it is
// trusted: its size is bounded by the full package's, its header must name
// the committed image and the signed payload, and the written slot must
// hash to the signed payload digest.
//
// # State, power loss, resume
//
// The State (trust root, release version, newest creation time seen,
// security counters, committed and pending images) lives in a Store whose
// Save is atomic. The committed image is never written; a crash at any step
// of Install leaves the committed release bootable and the next Install
// resumes the download (staged blobs are re-hashed, the source opened at
// the staged length) and redoes the slot writes. Commit is one state write;
// the bootloader switch after it (Slots.Activate) is repeated on the next
// operation if a crash interrupted it. Counters advance only in Commit and
// never go back.
//
// # Resources
//
// Time is always a parameter; the package never reads the clock. Memory is
// bounded by one copy buffer (Limits.BufferSize) and the decoders' fixed
// windows: imagepkg.MaxDecoderWindow for packages, and for deltas the
// device's own Limits.MaxDeltaMemory, whatever a delta header asks for.
// Staging needs disk room for the largest blob of a release.
//
// A Device serializes its own methods. Every method that may write holds
// the Store's lock (Locker; FileStore's is a flock beside the state file)
// for its whole duration, so that a second process using the same state
// fails at once with ErrStateLocked instead of interleaving; and every
// Save is a compare and swap on State.Generation (ErrStateConflict), so
// that a state loaded before another process saved can never overwrite
// it. Counters cannot go back through any interleaving of processes.
//
// Files the device creates or writes (staging, file slots, the state and
// its temporary and lock files) are opened without following symlinks and
// must be regular files; nothing it opens can be a FIFO that blocks.
//
// # Microcontrollers
//
// A component listed as an MCUboot image (its package is its payload: the
// image file) is installed into the slots as it is and checked there as
// MCUboot will check it: hash, key hash among the trust root's release keys,
// signature, version and security counter equal to the release's. With a
// Secondary configured for the component (Config.Secondaries), its security
// counter must not be above the image's, and Commit hands the committed
// image to it; Recover retries a hand-over that failed (ErrSecondary).
//
// The package imports only the standard library, klauspost/compress and
// upkit's format packages (spec, imagepkg, manifest, delta, mcuboot); a
// test enforces it.
package device
