package envfile

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lists [][]string
		want  []string
	}{
		{"none", nil, nil},
		{"one", [][]string{{"A=1", "B=2"}}, []string{"A=1", "B=2"}},
		{"later wins and stands where its list puts it",
			[][]string{{"PATH=/bin", "A=1", "B=2"}, {"A=3", "C=4"}}, []string{"PATH=/bin", "B=2", "A=3", "C=4"}},
		{"three lists", [][]string{{"A=1"}, {"B=2"}, {"A=5", "TERM=xterm"}}, []string{"B=2", "A=5", "TERM=xterm"}},
		{"values with =", [][]string{{"A=x=y"}, {"A=z=w"}}, []string{"A=z=w"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(tt.lists...); !slices.Equal(got, tt.want) {
				t.Errorf("Merge = %q, want %q", got, tt.want)
			}
		})
	}
}
