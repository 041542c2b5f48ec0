package signing

import (
	"context"
	"errors"
	"os"
	"testing"
)

// A key loading in the background: its methods wait for it; a key that
// fails to load cancels the context of the work, with the load error.
func TestLoadInBackground(t *testing.T) {
	prefix, k := writeKey(t, AlgorithmEd25519, "pw")
	t.Setenv("TEST_PW", "pw")
	p := LoadInBackground(context.Background(), prefix+".key", EnvOrTerminalPassword("TEST_PW", os.Stderr))
	defer p.Close()
	sig, err := p.Sign(context.Background(), []byte("msg"))
	if err != nil || p.KeyID() != k.ID || p.Public().Verify([]byte("msg"), sig) != nil {
		t.Fatalf("background key: %v", err)
	}
	if p.Context().Err() != nil {
		t.Fatal("context canceled although the key loaded")
	}

	t.Setenv("TEST_PW", "wrong")
	bad := LoadInBackground(context.Background(), prefix+".key", EnvOrTerminalPassword("TEST_PW", os.Stderr))
	<-bad.Context().Done()
	if _, err := bad.Wait(); !errors.Is(err, ErrPassword) || !errors.Is(context.Cause(bad.Context()), ErrPassword) {
		t.Fatalf("wrong password: %v, cause %v", err, context.Cause(bad.Context()))
	}
	if bad.KeyID() != "" || bad.Public() != nil {
		t.Fatal("a key that failed to load has an ID")
	}
	if _, err := bad.Sign(context.Background(), []byte("msg")); !errors.Is(err, ErrPassword) {
		t.Fatalf("Sign: %v", err)
	}
}

func TestEnvOrTerminalPassword(t *testing.T) {
	t.Setenv("TEST_PW", "")
	if pw, err := EnvOrTerminalPassword("TEST_PW", os.Stderr)(true); err != nil || len(pw) != 0 {
		t.Fatalf("empty password from the environment: %q, %v", pw, err)
	}
	os.Unsetenv("TEST_PW")
	// The test's stdin is not a terminal.
	if _, err := EnvOrTerminalPassword("TEST_PW", os.Stderr)(false); err == nil {
		t.Fatal("no password and no terminal: accepted")
	}
}
