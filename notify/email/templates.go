package email

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	texttemplate "text/template"
	"time"
)

//go:embed templates/*.txt templates/*.html
var defaultTemplates embed.FS

// Kind is which notification a mail is; it names its templates
// (<kind>.txt, <kind>.html).
type Kind string

// The notifications.
const (
	KindAck      Kind = "ack"      // a new ticket was opened
	KindResponse Kind = "response" // an agent answered
	KindStatus   Kind = "status"   // the ticket's status changed
)

var kinds = []Kind{KindAck, KindResponse, KindStatus}

// TemplateData is what every template is executed with. Text templates
// (text/template) get it as is; HTML templates (html/template) escape it,
// and offer nl2br to keep the line breaks of plain text.
type TemplateData struct {
	Kind  Kind
	RefID int64
	// Subject is the ticket's subject without reply prefixes or ticket tag.
	Subject  string
	Category string
	Priority string
	// Status is the current status value (created, open, in-progress,
	// resolved, closed); StatusLabel is it for people ("In progress").
	Status      string
	StatusLabel string
	// PreviousStatus and its label are set for status notices.
	PreviousStatus      string
	PreviousStatusLabel string
	// Description is the ticket's first message.
	Description string
	// Response is the agent's reply text (response mails).
	Response string
	// AgentName is the replying agent's name, empty when unknown.
	AgentName     string
	CustomerName  string
	CustomerEmail string
	// CreatedAt is when the ticket was opened; At when the change happened.
	CreatedAt time.Time
	At        time.Time
}

// templates holds the parsed text and HTML template of every kind.
type templates struct {
	text map[Kind]*texttemplate.Template
	html map[Kind]*htmltemplate.Template // nil when text only
}

var htmlFuncs = htmltemplate.FuncMap{
	// nl2br escapes plain text and keeps its line breaks.
	"nl2br": func(s string) htmltemplate.HTML {
		esc := htmltemplate.HTMLEscapeString(strings.ReplaceAll(s, "\r\n", "\n"))
		return htmltemplate.HTML(strings.ReplaceAll(esc, "\n", "<br>\n"))
	},
}

// loadTemplates parses the embedded defaults, replaced file by file by
// those in dir, and executes each once on sample data so that a template
// naming a missing field fails now rather than at send time. Files in dir
// that are not templates of a known kind are errors (a misspelt override
// would otherwise be silently ignored).
func loadTemplates(dir string, withHTML bool) (*templates, error) {
	var override fs.FS
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", dir)
		}
		override = os.DirFS(dir)
		entries, err := fs.ReadDir(override, ".")
		if err != nil {
			return nil, err
		}
		known := map[string]bool{}
		for _, k := range kinds {
			known[string(k)+".txt"], known[string(k)+".html"] = true, true
		}
		var errs []error
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if !known[e.Name()] {
				errs = append(errs, fmt.Errorf("%s: unknown template (want <ack|response|status>.<txt|html>)", e.Name()))
			}
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	read := func(name string) (string, string, error) {
		if override != nil {
			b, err := fs.ReadFile(override, name)
			if err == nil {
				return string(b), path.Join(dir, name), nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", "", err
			}
		}
		b, err := defaultTemplates.ReadFile("templates/" + name)
		return string(b), "default " + name, err
	}
	t := &templates{text: map[Kind]*texttemplate.Template{}}
	if withHTML {
		t.html = map[Kind]*htmltemplate.Template{}
	}
	var errs []error
	for _, k := range kinds {
		sample := sampleData(k)
		src, from, err := read(string(k) + ".txt")
		if err == nil {
			var tt *texttemplate.Template
			tt, err = texttemplate.New(string(k) + ".txt").Option("missingkey=error").Parse(src)
			if err == nil {
				err = tt.Execute(io.Discard, sample)
			}
			t.text[k] = tt
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		}
		if !withHTML {
			continue
		}
		src, from, err = read(string(k) + ".html")
		if err == nil {
			var ht *htmltemplate.Template
			ht, err = htmltemplate.New(string(k) + ".html").Funcs(htmlFuncs).Option("missingkey=error").Parse(src)
			if err == nil {
				err = ht.Execute(io.Discard, sample)
			}
			t.html[k] = ht
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// render returns the text body and, unless text only, the HTML body.
func (t *templates) render(d *TemplateData) (text, html string, err error) {
	var b bytes.Buffer
	if err := t.text[d.Kind].Execute(&b, d); err != nil {
		return "", "", fmt.Errorf("render %s.txt: %w", d.Kind, err)
	}
	text = b.String()
	if t.html == nil {
		return text, "", nil
	}
	b.Reset()
	if err := t.html[d.Kind].Execute(&b, d); err != nil {
		return "", "", fmt.Errorf("render %s.html: %w", d.Kind, err)
	}
	return text, b.String(), nil
}

func sampleData(k Kind) *TemplateData {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &TemplateData{
		Kind: k, RefID: 42, Subject: "Printer on fire", Category: "hardware", Priority: "high",
		Status: "resolved", StatusLabel: "Resolved", PreviousStatus: "open", PreviousStatusLabel: "Open",
		Description: "It smokes.\nA lot.", Response: "Please unplug it.\n\nThanks", AgentName: "Ada",
		CustomerName: "Bob", CustomerEmail: "bob@example.com", CreatedAt: now, At: now,
	}
}

// statusLabel turns a status value into words: "in-progress" → "In progress".
func statusLabel(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "-", " ")
	return strings.ToUpper(s[:1]) + s[1:]
}
