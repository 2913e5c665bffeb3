package password

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The README and configs/gateway.yaml state the alphabet's size and the
// bits of a DefaultLength password: both must say what this package does.
func TestDocsStateTheAlphabetAndBits(t *testing.T) {
	t.Parallel()
	size := len(Alphabet())
	bits := int(math.Round(Entropy(DefaultLength)))
	tests := []struct {
		file string
		re   *regexp.Regexp // size, then bits
	}{
		{"../../configs/gateway.yaml", regexp.MustCompile(`alphabet has ~?(\d+) characters .*, so 16 gives ~(\d+) bits`)},
		{"../../README.md", regexp.MustCompile(`from a (\d+)-character alphabet \(16 ≈ (\d+) bits\)`)},
	}
	for _, tt := range tests {
		raw, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		// Comments wrap: read the file as one line.
		text := strings.Join(strings.Fields(strings.ReplaceAll(string(raw), "#", "")), " ")
		m := tt.re.FindStringSubmatch(text)
		if m == nil {
			t.Errorf("%s does not state the alphabet and the bits (%v)", tt.file, tt.re)
			continue
		}
		if m[1] != strconv.Itoa(size) || m[2] != strconv.Itoa(bits) {
			t.Errorf("%s says %s characters and %s bits; the alphabet has %d, %d characters give ~%d bits", tt.file, m[1], m[2], size, DefaultLength, bits)
		}
	}
	// The README's recovery walk-through quotes the bits too.
	if raw, _ := os.ReadFile("../../README.md"); !strings.Contains(strings.Join(strings.Fields(string(raw)), " "), fmt.Sprintf("has ~%d random bits", bits)) {
		t.Errorf("README.md does not say the temporary password has ~%d random bits", bits)
	}
}
