package signing

import (
	"context"

	"github.com/upkit/upkit/spec"
)

// PendingSigner is a signer whose key loads in the background while other
// work runs (a key is often needed only at the end, and decrypting a key
// file, reaching a KMS or logging in to a token takes a while). Its
// methods wait for the key.
type PendingSigner struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	s      *Signer
	err    error
}

var _ spec.PublicSigner = (*PendingSigner)(nil)

// LoadInBackground starts Load(ctx, ref, pf) in a goroutine. Run the work
// that needs the key under Context: it is canceled with the load's error
// as soon as loading fails. pf must not prompt on a terminal where the
// work prints progress (load such a key with Load first instead).
func LoadInBackground(ctx context.Context, ref string, pf PassFunc) *PendingSigner {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &PendingSigner{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if p.s, p.err = Load(ctx, ref, pf); p.err != nil {
			cancel(p.err)
		}
	}()
	return p
}

// Context is canceled, with the load error as its cause, if the key fails
// to load, and by Close.
func (p *PendingSigner) Context() context.Context { return p.ctx }

// Wait returns the loaded signer or the error that stopped it.
func (p *PendingSigner) Wait() (*Signer, error) {
	<-p.done
	return p.s, p.err
}

// Close cancels Context (and the load, if it still runs).
func (p *PendingSigner) Close() { p.cancel(nil) }

// KeyID waits for the key and returns its key ID ("" if it failed to load).
func (p *PendingSigner) KeyID() string {
	if s, err := p.Wait(); err == nil {
		return s.KeyID()
	}
	return ""
}

// Sign waits for the key and signs message with it.
func (p *PendingSigner) Sign(ctx context.Context, message []byte) ([]byte, error) {
	s, err := p.Wait()
	if err != nil {
		return nil, err
	}
	return s.Sign(ctx, message)
}

// Public waits for the key and returns its public key (nil if it failed
// to load).
func (p *PendingSigner) Public() *spec.PublicKey {
	if s, err := p.Wait(); err == nil {
		return s.Public()
	}
	return nil
}
