package password_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/password"
)

// lookAlikes are characters a password must never hold: they are misread in
// common fonts or mangled when pasted and quoted. The list is kept here, apart
// from the package, so that a change to the alphabet is checked against it.
const lookAlikes = "0Oo1lIi|'\"`\\ \t\n"

func TestAlphabet(t *testing.T) {
	t.Parallel()
	alphabet := password.Alphabet()
	classes := password.Classes()

	if got := strings.Join(classes, ""); got != alphabet {
		t.Errorf("classes joined = %q, want the alphabet %q", got, alphabet)
	}
	seen := make(map[rune]bool)
	for _, c := range alphabet {
		if seen[c] {
			t.Errorf("alphabet holds %q twice, which would bias the draw towards it", c)
		}
		seen[c] = true
		if c > unicode.MaxASCII || !unicode.IsPrint(c) {
			t.Errorf("alphabet holds %q, want printable ASCII", c)
		}
	}
	if strings.ContainsAny(alphabet, lookAlikes) {
		t.Errorf("alphabet %q holds a look-alike from %q", alphabet, lookAlikes)
	}

	// Each class must be what its position says, or "every class present"
	// would not mean what a password policy means by it.
	kinds := []struct {
		name string
		is   func(rune) bool
	}{
		{"upper", unicode.IsUpper},
		{"lower", unicode.IsLower},
		{"digit", unicode.IsDigit},
		{"symbol", func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }},
	}
	if len(classes) != len(kinds) {
		t.Fatalf("got %d classes, want %d", len(classes), len(kinds))
	}
	for i, k := range kinds {
		if classes[i] == "" {
			t.Errorf("class %s is empty", k.name)
		}
		for _, c := range classes[i] {
			if !k.is(c) {
				t.Errorf("class %s holds %q", k.name, c)
			}
		}
	}
}

func TestClassesReturnsCopy(t *testing.T) {
	t.Parallel()
	c := password.Classes()
	c[0] = "0O"
	if got := password.Classes()[0]; got == "0O" {
		t.Error("changing the slice from Classes changed the package's classes")
	}
}

func TestGenerateLength(t *testing.T) {
	t.Parallel()
	for _, length := range []int{password.MinLength, password.MinLength + 1, password.DefaultLength, 64, password.MaxLength} {
		g := password.Generator{Length: length}
		got, err := g.Generate()
		if err != nil {
			t.Fatalf("Length %d: Generate: %v", length, err)
		}
		if len(got) != length {
			t.Errorf("Length %d: got %d characters (%q)", length, len(got), got)
		}
	}
}

func TestGenerateCharacters(t *testing.T) {
	t.Parallel()
	alphabet := password.Alphabet()
	// MinLength is where a draw most often misses a class (about three
	// times in ten), so it exercises the redraw the most.
	g := password.Generator{Length: password.MinLength}
	for range 2000 {
		p, err := g.Generate()
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		for _, c := range p {
			if !strings.ContainsRune(alphabet, c) {
				t.Errorf("password %q holds %q, outside the alphabet", p, c)
			}
		}
		if strings.ContainsAny(p, lookAlikes) {
			t.Errorf("password %q holds a look-alike from %q", p, lookAlikes)
		}
		for _, class := range password.Classes() {
			if !strings.ContainsAny(p, class) {
				t.Errorf("password %q holds nothing from class %q", p, class)
			}
		}
	}
}

// TestGenerateUniform checks with a chi-square test that every character of
// the alphabet is drawn equally often. The source is seeded so the test is
// deterministic; its power is shown by the same statistic rejecting a plain
// byte-modulo mapping of the same bytes.
func TestGenerateUniform(t *testing.T) {
	t.Parallel()
	const (
		chars = 200_000
		p     = 0.001
		seed  = "kratos-email-gateway uniformity"
	)
	alphabet := password.Alphabet()
	n := len(alphabet)
	crit := chiSquareCritical(t, n-1, p)

	var key [32]byte
	copy(key[:], seed)

	// MaxLength makes a draw missing a class (and so the redraw, which
	// favours the small classes slightly) vanishingly rare: about 1e-7.
	g := password.Generator{Length: password.MaxLength, Rand: rand.NewChaCha8(key)}
	counts := make([]int, n)
	total := 0
	for total < chars {
		pw, err := g.Generate()
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		for i := range len(pw) {
			counts[strings.IndexByte(alphabet, pw[i])]++
		}
		total += len(pw)
	}
	if stat := chiSquare(counts, total); stat > crit {
		t.Errorf("chi-square = %.1f over %d characters, above the critical value %.1f (df=%d, p=%g): characters are not uniform\ncounts: %v",
			stat, total, crit, n-1, p, counts)
	}

	t.Run("statistic detects modulo bias", func(t *testing.T) {
		t.Parallel()
		biased := make([]int, n)
		buf := make([]byte, chars)
		rand.NewChaCha8(key).Read(buf)
		for _, b := range buf {
			biased[int(b)%n]++
		}
		if stat := chiSquare(biased, chars); stat <= crit {
			t.Errorf("chi-square of b%%%d = %.1f, want above the critical value %.1f; the uniformity test has no power", n, stat, crit)
		}
	})
}

// chiSquare is Pearson's statistic for counts against a uniform expectation.
func chiSquare(counts []int, total int) float64 {
	want := float64(total) / float64(len(counts))
	var stat float64
	for _, c := range counts {
		d := float64(c) - want
		stat += d * d / want
	}
	return stat
}

// chiSquareCritical returns the value a chi-square statistic with df degrees
// of freedom exceeds with probability p, by the Wilson–Hilferty
// approximation: (X/df)^(1/3) is close to normal with mean 1-2/(9df) and
// variance 2/(9df).
func chiSquareCritical(t *testing.T, df int, p float64) float64 {
	t.Helper()
	z := math.Sqrt2 * math.Erfinv(1-2*p) // upper p quantile of N(0,1)
	v := 2 / (9 * float64(df))
	return float64(df) * math.Pow(1-v+z*math.Sqrt(v), 3)
}

// TestChiSquareCritical checks the approximation against printed tables, so
// a slip in the formula cannot quietly make the uniformity test lax.
func TestChiSquareCritical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		df   int
		p    float64
		want float64
	}{
		{10, 0.001, 29.588},
		{50, 0.001, 86.661},
		{100, 0.001, 149.449},
		{60, 0.05, 79.082},
	}
	for _, tt := range tests {
		if got := chiSquareCritical(t, tt.df, tt.p); math.Abs(got-tt.want)/tt.want > 0.01 {
			t.Errorf("chiSquareCritical(%d, %g) = %.3f, want %.3f within 1%%", tt.df, tt.p, got, tt.want)
		}
	}
}

// TestGenerateRejectsBiasedBytes feeds hand-picked bytes and checks which
// ones become characters: every byte at or above the largest multiple of the
// alphabet size that fits in a byte must be skipped, every byte below it
// must map to alphabet[b%n].
func TestGenerateRejectsBiasedBytes(t *testing.T) {
	t.Parallel()
	alphabet := password.Alphabet()
	n := len(alphabet)
	limit := 256 - 256%n
	if limit == 256 {
		t.Fatalf("alphabet size %d divides 256, no byte should be rejected; rewrite this test", n)
	}

	const want = "Hk7#Zr2@Wm9_" // ends in the last character: see below
	if len(want) != password.MinLength {
		t.Fatalf("want has %d characters, need %d", len(want), password.MinLength)
	}
	var in []byte
	for i := range len(want) {
		idx := strings.IndexByte(alphabet, want[i])
		if idx < 0 {
			t.Fatalf("%q is not in the alphabet", want[i])
		}
		// A different rejected byte before every character, from limit
		// (the lowest rejected) upwards, and 255 before the first.
		if i == 0 {
			in = append(in, 255)
		}
		in = append(in, byte(limit+i%(256-limit)))
		// Spread the accepted bytes over the multiples of n; the last
		// character (index n-1) at i%3 == 2 becomes limit-1, the highest
		// accepted byte.
		in = append(in, byte(idx+n*(i%(limit/n))))
	}
	if !bytes.Contains(in, []byte{byte(limit - 1)}) || !bytes.Contains(in, []byte{byte(limit)}) {
		t.Fatalf("input %v misses a boundary byte %d or %d", in, limit-1, limit)
	}

	g := password.Generator{Length: len(want), Rand: bytes.NewReader(in)}
	got, err := g.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if got != want {
		t.Errorf("Generate = %q, want %q: bytes >= %d must be skipped, bytes below map to alphabet[b%%%d]", got, want, limit, n)
	}
}

// TestGenerateRedrawsMissingClass feeds a first draw that misses one class
// and checks that the whole password is drawn again, rather than returned
// or patched.
func TestGenerateRedrawsMissingClass(t *testing.T) {
	t.Parallel()
	alphabet := password.Alphabet()
	const valid = "Hk7#Zr2@Wm9_"
	for i, missing := range password.Classes() {
		t.Run(missing, func(t *testing.T) {
			t.Parallel()
			var others []string
			for j, c := range password.Classes() {
				if j != i {
					others = append(others, c)
				}
			}
			var in []byte
			for k := range len(valid) {
				class := others[k%len(others)]
				in = append(in, byte(strings.IndexByte(alphabet, class[k%len(class)])))
			}
			for k := range len(valid) {
				in = append(in, byte(strings.IndexByte(alphabet, valid[k])))
			}

			g := password.Generator{Length: len(valid), Rand: bytes.NewReader(in)}
			got, err := g.Generate()
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if got != valid {
				t.Errorf("Generate = %q, want the second draw %q", got, valid)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestGenerateReadError(t *testing.T) {
	t.Parallel()
	broken := errors.New("entropy source unplugged")
	tests := []struct {
		name string
		rand io.Reader
		want error
	}{
		{"failing reader", errReader{broken}, broken},
		{"empty reader", bytes.NewReader(nil), io.ErrUnexpectedEOF},
		{"runs dry mid-password", bytes.NewReader([]byte{1, 2, 3, 4, 5}), io.ErrUnexpectedEOF},
		{"fails after some bytes", io.MultiReader(bytes.NewReader([]byte{1, 2, 3}), errReader{broken}), broken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := password.Generator{Length: password.MinLength, Rand: tt.rand}
			got, err := g.Generate()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Generate error = %v, want it to wrap %v", err, tt.want)
			}
			if got != "" {
				t.Errorf("Generate returned %q alongside an error", got)
			}
		})
	}
}

// panicReader fails the test if Generate reads randomness it cannot use.
type panicReader struct{ t *testing.T }

func (r panicReader) Read([]byte) (int, error) {
	r.t.Error("Generate read from Rand despite an invalid length")
	return 0, io.EOF
}

func TestInvalidLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		length int
		ok     bool
	}{
		{-1, false},
		{0, false},
		{password.MinLength - 1, false},
		{password.MinLength, true},
		{password.DefaultLength, true},
		{password.MaxLength, true},
		{password.MaxLength + 1, false},
		{1 << 20, false},
	}
	for _, tt := range tests {
		err := password.Validate(tt.length)
		if tt.ok {
			if err != nil {
				t.Errorf("Validate(%d) = %v, want nil", tt.length, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Validate(%d) = nil, want an error", tt.length)
			continue
		}
		for _, s := range []string{"password.length", "12", "128"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Validate(%d) = %q, want it to name %q", tt.length, err, s)
			}
		}
		g := password.Generator{Length: tt.length, Rand: panicReader{t}}
		if _, gerr := g.Generate(); gerr == nil || gerr.Error() != err.Error() {
			t.Errorf("Generate with Length %d: error %v, want %v", tt.length, gerr, err)
		}
	}
}

func TestEntropy(t *testing.T) {
	t.Parallel()
	perChar := math.Log2(float64(len(password.Alphabet())))
	for _, length := range []int{password.MinLength, password.DefaultLength, password.MaxLength} {
		if got, want := password.Entropy(length), float64(length)*perChar; math.Abs(got-want) > 1e-9 {
			t.Errorf("Entropy(%d) = %v, want %v", length, got, want)
		}
	}
	if got := password.Entropy(password.MinLength); got <= 64 {
		t.Errorf("Entropy(MinLength) = %.1f bits, want well over 64", got)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for _, length := range []int{password.MinLength, password.DefaultLength, password.MaxLength} {
		b.Run("length="+strconv.Itoa(length), func(b *testing.B) {
			g := password.Generator{Length: length}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Generate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
