package slackfake

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slack-go/slack"
)

// BlocksText is every text of a message's blocks (headers, sections and
// their fields, context elements), joined by newlines, for tests that
// check what a message says.
func BlocksText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var bs slack.Blocks
	if err := json.Unmarshal(raw, &bs); err != nil {
		return "", fmt.Errorf("blocks: %w", err)
	}
	var out []string
	for _, b := range bs.BlockSet {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			out = append(out, b.Text.Text)
		case *slack.SectionBlock:
			if b.Text != nil {
				out = append(out, b.Text.Text)
			}
			for _, f := range b.Fields {
				out = append(out, f.Text)
			}
		case *slack.ContextBlock:
			for _, el := range b.ContextElements.Elements {
				if tx, ok := el.(*slack.TextBlockObject); ok {
					out = append(out, tx.Text)
				}
			}
		}
	}
	return strings.Join(out, "\n"), nil
}
