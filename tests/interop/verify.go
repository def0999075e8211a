// Command verify checks Kimberley Ledger output with Go's own transparency-log code:
// golang.org/x/mod/sumdb/note (signed notes) and golang.org/x/mod/sumdb/tlog (RFC 6962
// proofs), as vendored in the Go toolchain. tests/test_interop_go.py builds and runs it.
//
// Usage (each file is exactly what the `kimberley` CLI printed):
//
//	verify checkpoint  VKEY NOTE               open a signed checkpoint
//	verify root        VKEY NOTE ENTRIES       recompute its root from the entries (base64, one a line)
//	verify inclusion   VKEY PROOF [ENTRY]      check a c2sp.org/tlog-proof@v1 (entry: its extra, or a file)
//	verify consistency VKEY OLDNOTE NEWNOTE PROOF   check an RFC 6962 consistency proof (base64 hashes)
//
// It prints one "ok ..." line and exits 0, or prints the reason and exits 1.
package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// checkpoint is the body of a c2sp.org/tlog-checkpoint note.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func readFile(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	return data
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "verify:", err)
	os.Exit(1)
}

func decodeHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != tlog.HashSize {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], raw)
	return h, nil
}

// openCheckpoint verifies the note's signature with the log key, then parses the
// origin / size / root lines (tlog.ParseTree expects the sumdb "go.sum database tree" header).
func openCheckpoint(vkey string, msg []byte) (checkpoint, error) {
	var cp checkpoint
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return cp, fmt.Errorf("log key: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return cp, fmt.Errorf("checkpoint note: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return cp, errors.New("checkpoint has fewer than 3 lines")
	}
	if lines[0] != verifier.Name() {
		return cp, fmt.Errorf("checkpoint origin %q is not the key name %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return cp, fmt.Errorf("bad checkpoint size %q", lines[1])
	}
	root, err := decodeHash(lines[2])
	if err != nil {
		return cp, fmt.Errorf("checkpoint root: %w", err)
	}
	return checkpoint{lines[0], size, root}, nil
}

// parseProof splits a c2sp.org/tlog-proof@v1 into extra, index, hashes and the checkpoint note.
func parseProof(text string) (extra []byte, index int64, proof tlog.RecordProof, cpNote []byte, err error) {
	head, cpText, found := strings.Cut(text, "\n\n")
	if !found {
		return nil, 0, nil, nil, errors.New("proof has no blank line")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return nil, 0, nil, nil, fmt.Errorf("bad proof header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err = base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("proof extra: %w", err)
		}
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return nil, 0, nil, nil, errors.New("proof has no index line")
	}
	index, err = strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("proof index: %w", err)
	}
	for _, line := range lines[1:] {
		h, err := decodeHash(line)
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("proof: %w", err)
		}
		proof = append(proof, h)
	}
	return extra, index, proof, []byte(cpText), nil
}

func readHashes(path string) ([]tlog.Hash, error) {
	var hashes []tlog.Hash
	for _, line := range strings.Fields(string(readFile(path))) {
		h, err := decodeHash(line)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// treeRoot computes the RFC 6962 root of the first n entries with tlog's stored-hash scheme.
func treeRoot(entries [][]byte, n int64) (tlog.Hash, error) {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i := int64(0); i < n; i++ {
		hashes, err := tlog.StoredHashes(i, entries[i], reader)
		if err != nil {
			return tlog.Hash{}, err
		}
		stored = append(stored, hashes...)
	}
	return tlog.TreeHash(n, reader)
}

func run(args []string) (string, error) {
	if len(args) < 3 {
		return "", errors.New("usage: verify checkpoint|root|inclusion|consistency VKEY ...")
	}
	vkey := string(readFile(args[1]))
	switch {
	case args[0] == "checkpoint" && len(args) == 3:
		cp, err := openCheckpoint(vkey, readFile(args[2]))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("ok checkpoint %s %d %s", cp.origin, cp.size, cp.root), nil

	case args[0] == "root" && len(args) == 4:
		cp, err := openCheckpoint(vkey, readFile(args[2]))
		if err != nil {
			return "", err
		}
		var entries [][]byte
		for _, line := range strings.Fields(string(readFile(args[3]))) {
			entry, err := base64.StdEncoding.Strict().DecodeString(line)
			if err != nil {
				return "", fmt.Errorf("entry: %w", err)
			}
			entries = append(entries, entry)
		}
		if cp.size < 1 || cp.size > int64(len(entries)) {
			return "", fmt.Errorf("checkpoint size %d, have %d entries", cp.size, len(entries))
		}
		root, err := treeRoot(entries, cp.size)
		if err != nil {
			return "", err
		}
		if root != cp.root {
			return "", fmt.Errorf("entries give root %s, checkpoint says %s", root, cp.root)
		}
		return fmt.Sprintf("ok root %d %s", cp.size, root), nil

	case args[0] == "inclusion" && (len(args) == 3 || len(args) == 4):
		extra, index, proof, cpNote, err := parseProof(string(readFile(args[2])))
		if err != nil {
			return "", err
		}
		entry := extra
		if len(args) == 4 {
			entry = readFile(args[3])
		}
		if entry == nil {
			return "", errors.New("no entry: the proof has no extra and none was given")
		}
		cp, err := openCheckpoint(vkey, cpNote)
		if err != nil {
			return "", err
		}
		if err := tlog.CheckRecord(proof, cp.size, cp.root, index, tlog.RecordHash(entry)); err != nil {
			return "", fmt.Errorf("inclusion of %d in %d: %w", index, cp.size, err)
		}
		return fmt.Sprintf("ok inclusion %d %d", index, cp.size), nil

	case args[0] == "consistency" && len(args) == 5:
		old, err := openCheckpoint(vkey, readFile(args[2]))
		if err != nil {
			return "", fmt.Errorf("old %w", err)
		}
		cp, err := openCheckpoint(vkey, readFile(args[3]))
		if err != nil {
			return "", fmt.Errorf("new %w", err)
		}
		hashes, err := readHashes(args[4])
		if err != nil {
			return "", err
		}
		if err := tlog.CheckTree(tlog.TreeProof(hashes), cp.size, cp.root, old.size, old.root); err != nil {
			return "", fmt.Errorf("consistency %d -> %d: %w", old.size, cp.size, err)
		}
		return fmt.Sprintf("ok consistency %d %d", old.size, cp.size), nil
	}
	return "", fmt.Errorf("bad arguments %q", args)
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fail(err)
	}
	fmt.Println(out)
}
