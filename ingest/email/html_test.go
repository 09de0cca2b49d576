package email

import "testing"

func TestHTMLToText(t *testing.T) {
	cases := []struct {
		name, in, want string
		dropQuotes     bool
	}{
		{name: "paragraphs", in: "<p>One</p><p>Two</p>", want: "One\n\nTwo"},
		{name: "br", in: "a<br>b<br/>c", want: "a\nb\nc"},
		{name: "list", in: "<ul><li>x</li><li>y</li></ul>after", want: "- x\n- y\n\nafter"},
		{name: "link", in: `<a href="https://e.test/a">here</a>`, want: "here (https://e.test/a)"},
		{name: "link same text", in: `<a href="https://e.test/">https://e.test</a>`, want: "https://e.test"},
		{name: "mailto", in: `<a href="mailto:a@b.test">a@b.test</a>`, want: "a@b.test"},
		{name: "script style head", in: "<head><title>T</title><style>x{}</style></head><body><script>bad()</script>ok</body>", want: "ok"},
		{name: "entities", in: "Fish &amp; chips &lt;3 &eacute;&nbsp;&#8364;", want: "Fish & chips <3 é €"},
		{name: "whitespace collapse", in: "<div>a\n   b\t c</div>", want: "a b c"},
		{name: "pre kept", in: "<pre>a\n  b</pre>", want: "a\n  b"},
		{name: "table cells", in: "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", want: "a b\nc"},
		{name: "gmail quote kept in full", in: `<div>new</div><div class="gmail_quote">old</div>`, want: "new\nold"},
		{name: "gmail quote dropped", in: `<div>new</div><div class="gmail_quote"><div>old</div><div>older</div></div><div>tail</div>`, want: "new\ntail", dropQuotes: true},
		{name: "apple cite dropped", in: `new<blockquote type="cite">old</blockquote>`, want: "new", dropQuotes: true},
		{name: "unclosed junk", in: "<div><p>a<b>b<i>c", want: "abc"},
		{name: "img alt", in: `see <img src="cid:x" alt="chart">`, want: "see [chart]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tidyText(htmlToText(tc.in, tc.dropQuotes)); got != tc.want {
				t.Errorf("htmlToText(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}
