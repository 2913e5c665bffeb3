// Package password generates the random temporary passwords the gateway mails
// to users who asked to recover their account.
//
// Every character is drawn uniformly from an alphabet of four classes (upper
// and lower case letters, digits and symbols) from which characters that are
// easy to misread or mistype have been removed, and every password contains
// at least one character of each class so that it passes the usual password
// policies.
package password

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
)

// MinLength and MaxLength bound Generator.Length. MinLength keeps well over
// 64 bits of entropy (about 72.8) and DefaultLength gives about 97 bits; see
// Entropy.
const (
	MinLength     = 12
	MaxLength     = 128
	DefaultLength = 16
)

// The classes leave out characters that look alike in common fonts (0 O o,
// 1 l I i |), quotes, backslash, backtick and space, which get mangled when
// pasted or quoted, and ^ and ~, which are dead keys on many European
// keyboard layouts and so are hard to type.
const (
	upper   = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	lower   = "abcdefghjkmnpqrstuvwxyz"
	digits  = "23456789"
	symbols = "!#$%&*+-=?@_"

	alphabet = upper + lower + digits + symbols
)

// Alphabet returns every character a password may contain.
func Alphabet() string { return alphabet }

// Classes returns the character classes (upper, lower, digits, symbols);
// every generated password holds at least one character of each.
func Classes() []string {
	c := classes()
	return c[:]
}

// classes is an array so that the check in Generate does not allocate.
func classes() [4]string { return [4]string{upper, lower, digits, symbols} }

// Entropy approximates the strength in bits of a password of the given
// length as length*log2(len(Alphabet())). Requiring every class removes the
// passwords that miss one, so the exact figure is slightly lower: about
// 0.5 bits less at MinLength and 0.3 bits less at DefaultLength.
func Entropy(length int) float64 {
	return float64(length) * math.Log2(float64(len(alphabet)))
}

// Validate reports whether length is an acceptable Generator.Length.
func Validate(length int) error {
	if length < MinLength || length > MaxLength {
		return fmt.Errorf("password.length must be between %d and %d, got %d", MinLength, MaxLength, length)
	}
	return nil
}

// Generator makes temporary passwords. The zero value is not usable: Length
// must be set. A Generator holds no state, so one value may be used from
// several goroutines as long as Rand is safe for concurrent use (the default
// is).
type Generator struct {
	Length int       // characters, between MinLength and MaxLength
	Rand   io.Reader // nil means crypto/rand.Reader
}

// Generate returns a new password of g.Length characters.
//
// Each character is uniform over Alphabet. If a draw misses a class, the
// whole password is drawn again rather than patching the missing class in:
// rejecting whole draws leaves the result uniform over all passwords that
// hold every class, whereas patching would make some passwords (those with
// exactly one digit, say) likelier than others, which a guesser can exploit.
func (g Generator) Generate() (string, error) {
	if err := Validate(g.Length); err != nil {
		return "", err
	}
	r := g.Rand
	if r == nil {
		r = rand.Reader
	}
	// About one byte in five is rejected and a draw at MinLength misses a
	// class about three times in ten, so twice the length usually covers a
	// whole password, redraw included, with a single read.
	src := byteSource{r: r, buf: make([]byte, 2*g.Length)}
	out := make([]byte, g.Length)
	for {
		for i := range out {
			c, err := src.char()
			if err != nil {
				return "", err
			}
			out[i] = c
		}
		if hasEveryClass(out) {
			return string(out), nil
		}
	}
}

// limit is the largest multiple of len(alphabet) that fits in a byte: bytes
// from limit up would map onto the first 256%len(alphabet) characters once
// more than onto the rest, so they are rejected to avoid modulo bias.
const limit = 256 - 256%len(alphabet)

// byteSource hands out random bytes, reading them from r in batches because
// a read from crypto/rand costs far more than a byte.
type byteSource struct {
	r    io.Reader
	buf  []byte
	next int // index in buf of the first unused byte
	end  int // number of bytes of buf filled by the last read
}

// char returns a character drawn uniformly from alphabet.
func (s *byteSource) char() (byte, error) {
	for {
		if s.next == s.end {
			if err := s.fill(); err != nil {
				return 0, err
			}
		}
		b := s.buf[s.next]
		s.next++
		if int(b) < limit {
			return alphabet[int(b)%len(alphabet)], nil
		}
	}
}

func (s *byteSource) fill() error {
	n, err := io.ReadAtLeast(s.r, s.buf, 1)
	s.next, s.end = 0, n
	if err != nil {
		// A source that runs dry did so in the middle of a password.
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read random bytes: %w", err)
	}
	return nil
}

func hasEveryClass(p []byte) bool {
	for _, class := range classes() {
		if !bytes.ContainsAny(p, class) {
			return false
		}
	}
	return true
}
