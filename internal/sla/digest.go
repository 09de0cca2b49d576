package sla

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// Poster is what the digest needs from Slack's Web API. *slack.Client
// satisfies it.
type Poster interface {
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	GetPermalinkContext(ctx context.Context, params *slack.PermalinkParameters) (string, error)
	GetConversationHistoryContext(ctx context.Context, params *slack.GetConversationHistoryParameters) (*slack.GetConversationHistoryResponse, error)
}

// DigestStore is what the digest needs from the store. *store.Store
// satisfies it.
type DigestStore interface {
	OpenTickets(ctx context.Context, limit int) ([]store.Ticket, bool, error)
	Agent(ctx context.Context, id bson.ObjectID) (*store.Agent, error)
	ClaimOnce(ctx context.Context, key string, lease time.Duration) (claim string, ok bool, err error)
	FinishOnce(ctx context.Context, key, claim string) error
}

// Defaults for the zero DigestOptions fields.
const (
	DefaultPerSection  = 10
	DefaultMaxTickets  = 2000
	DefaultDigestLease = 10 * time.Minute
	// historyPages bounds the search for a digest posted by a run that
	// died before recording it (pages of 200 messages).
	historyPages = 5
)

// The digest message's metadata: its event type, and the day it is for.
const (
	DigestMetadataType = "ticketd_digest"
	digestPayloadDate  = "date"
)

// DigestOptions configure the digest. Channel and Targets are required.
type DigestOptions struct {
	// Channel is the agents' channel ID.
	Channel string
	// Targets tell which tickets missed their first-response target; their
	// schedule's zone says which day it is.
	Targets *Targets
	// PerSection bounds the tickets listed in each section; the rest are
	// counted ("and 12 more"). 0 means DefaultPerSection.
	PerSection int
	// MaxTickets bounds the open tickets read; 0 means DefaultMaxTickets.
	MaxTickets int
	// Lease is how long a run holds the day's digest before another may
	// take it over; 0 means DefaultDigestLease.
	Lease  time.Duration
	Now    func() time.Time // nil means time.Now
	Logger *slog.Logger
}

// Digest is the morning message in the agents' channel: the open,
// unassigned and breaching tickets, each linking its Slack thread. It is
// posted once per day (in the business-hours zone) however often the job
// runs: the day's key in the store is claimed before posting and marked
// after; a run that died in between is found out by the message's metadata
// in the channel's history.
type Digest struct {
	st  DigestStore
	api Poster
	o   DigestOptions
	log *slog.Logger
	now func() time.Time
}

// NewDigest returns the digest job.
func NewDigest(st DigestStore, api Poster, o DigestOptions) (*Digest, error) {
	var errs []error
	if st == nil || api == nil {
		errs = append(errs, errors.New("digest: no store or no Slack client"))
	}
	if strings.TrimSpace(o.Channel) == "" {
		errs = append(errs, errors.New("digest: no channel"))
	}
	if o.Targets == nil {
		errs = append(errs, errors.New("digest: no targets"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.PerSection <= 0 {
		o.PerSection = DefaultPerSection
	}
	if o.MaxTickets <= 0 {
		o.MaxTickets = DefaultMaxTickets
	}
	if o.Lease <= 0 {
		o.Lease = DefaultDigestLease
	}
	now, log := clockAndLogger(o.Now, o.Logger, "digest")
	return &Digest{st: st, api: api, o: o, log: log, now: now}, nil
}

// Run posts today's digest unless it was posted already.
func (d *Digest) Run(ctx context.Context) error {
	now := d.now()
	zone := d.o.Targets.Hours().Location()
	day := now.In(zone).Format(time.DateOnly)
	key := "digest:" + d.o.Channel + ":" + day
	claim, ok, err := d.st.ClaimOnce(ctx, key, d.o.Lease)
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	if !ok {
		d.log.Info("digest of the day posted already (or being posted)", "day", day)
		return nil
	}
	posted, err := d.findPosted(ctx, day)
	if err != nil {
		return err
	}
	if !posted {
		text, blocks, err := d.compose(ctx, now)
		if err != nil {
			return err
		}
		_, _, err = d.api.PostMessageContext(ctx, d.o.Channel,
			slack.MsgOptionText(text, false),
			slack.MsgOptionBlocks(blocks...),
			slack.MsgOptionMetadata(slack.SlackMetadata{EventType: DigestMetadataType, EventPayload: map[string]any{digestPayloadDate: day}}))
		if err != nil {
			return fmt.Errorf("digest: post: %w", err)
		}
		d.log.Info("digest posted", "day", day)
	}
	if err := d.st.FinishOnce(ctx, key, claim); err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	return nil
}

// findPosted looks through the channel's newest messages (at most
// historyPages pages) for the day's digest, which a run that posted it
// and died before FinishOnce left there. Its metadata names the day, so
// no time window is needed, and Slack's clock and ours may disagree.
func (d *Digest) findPosted(ctx context.Context, day string) (bool, error) {
	p := &slack.GetConversationHistoryParameters{ChannelID: d.o.Channel, Limit: 200, IncludeAllMetadata: true}
	for page := 0; page < historyPages; page++ {
		h, err := d.api.GetConversationHistoryContext(ctx, p)
		if err != nil {
			return false, fmt.Errorf("digest: search the channel for today's digest: %w", err)
		}
		for _, m := range h.Messages {
			if m.Metadata.EventType == DigestMetadataType && m.Metadata.EventPayload[digestPayloadDate] == day {
				return true, nil
			}
		}
		if !h.HasMore || h.ResponseMetaData.NextCursor == "" {
			break
		}
		p.Cursor = h.ResponseMetaData.NextCursor
	}
	return false, nil
}

// section is one list of the digest.
type section struct {
	title   string
	tickets []*store.Ticket
	line    func(t *store.Ticket) string // what follows the ticket's title
}

// compose builds the digest: breaching, unassigned, then all open tickets,
// each bounded.
func (d *Digest) compose(ctx context.Context, now time.Time) (string, []slack.Block, error) {
	open, more, err := d.st.OpenTickets(ctx, d.o.MaxTickets)
	if err != nil {
		return "", nil, fmt.Errorf("digest: %w", err)
	}
	var breaching, unassigned, all []*store.Ticket
	for i := range open {
		t := &open[i]
		all = append(all, t)
		if t.AssigneeID == nil {
			unassigned = append(unassigned, t)
		}
		if breached(t, d.o.Targets, now) {
			breaching = append(breaching, t)
		}
	}
	slices.SortStableFunc(breaching, func(a, b *store.Ticket) int { return d.o.Targets.Due(a).Compare(d.o.Targets.Due(b)) })
	zone := d.o.Targets.Hours().Location()
	age := func(t *store.Ticket) string {
		return slackui.Mrkdwn(string(t.Priority), 20) + ", opened " + ago(now.Sub(t.CreatedAt))
	}
	sections := []section{
		{"Missed first-response target", breaching, func(t *store.Ticket) string {
			return slackui.Mrkdwn(string(t.Priority), 20) + ", due " + d.o.Targets.Due(t).In(zone).Format("Mon 2 Jan 15:04") + ", " + d.assignee(ctx, t)
		}},
		{"Unassigned", unassigned, age},
		{"Open", all, age},
	}
	head := "Support digest for " + now.In(zone).Format("Monday 2 January 2006")
	blocks := []slack.Block{slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, head, false, false))}
	text := []string{head}
	links := map[string]string{}
	for _, s := range sections {
		body := d.sectionText(ctx, s, more, links)
		text = append(text, fmt.Sprintf("%s: %s", s.title, countLabel(len(s.tickets), more)))
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, body, false, false), nil, nil))
	}
	return strings.Join(text, "; "), blocks, nil
}

// sectionText is a section's mrkdwn: its title and count, then at most
// PerSection lines, then how many more.
func (d *Digest) sectionText(ctx context.Context, s section, truncated bool, links map[string]string) string {
	var b strings.Builder
	b.WriteString("*" + s.title + "* (" + countLabel(len(s.tickets), truncated) + ")")
	if len(s.tickets) == 0 {
		b.WriteString("\nNone.")
	}
	shown := min(len(s.tickets), d.o.PerSection)
	for _, t := range s.tickets[:shown] {
		b.WriteString("\n• " + d.title(ctx, t, links) + " · " + s.line(t))
	}
	switch rest := len(s.tickets) - shown; {
	case truncated && len(s.tickets) > 0: // not every open ticket was read
		b.WriteString("\n…and at least " + strconv.Itoa(rest) + " more")
	case rest > 0:
		b.WriteString("\n…and " + strconv.Itoa(rest) + " more")
	}
	return slackui.Plain(b.String(), slackui.MaxSectionText)
}

func countLabel(n int, truncated bool) string {
	if truncated && n > 0 {
		return strconv.Itoa(n) + "+"
	}
	return strconv.Itoa(n)
}

// title is "#42 subject", linked to the ticket's thread in the agents'
// channel when it has one (the link is a convenience: without Slack's
// answer the title stays plain).
func (d *Digest) title(ctx context.Context, t *store.Ticket, links map[string]string) string {
	title := "#" + strconv.FormatInt(t.RefID, 10) + " " + slackui.Mrkdwn(t.Subject, 80)
	key := t.Thread(store.ThreadSlackAgents)
	ch, ts, ok := slackui.ParseMessageKey(key)
	if !ok {
		return title
	}
	link, seen := links[key]
	if !seen {
		var err error
		link, err = d.api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: ch, Ts: ts})
		if err != nil {
			d.log.Warn("no permalink for a ticket's thread", "ticket", t.ID.Hex(), "err", err)
			link = ""
		}
		links[key] = link
	}
	if link == "" {
		return title
	}
	return "<" + link + "|" + title + ">"
}

// assignee names the ticket's assignee without a mention: a digest
// should not ping everyone each morning.
func (d *Digest) assignee(ctx context.Context, t *store.Ticket) string {
	if t.AssigneeID == nil {
		return "unassigned"
	}
	ag, err := d.st.Agent(ctx, *t.AssigneeID)
	if err != nil {
		return "assigned"
	}
	name := strings.TrimSpace(ag.Name)
	if name == "" {
		name = ag.Email
	}
	return "assigned to " + slackui.Mrkdwn(name, 100)
}

// breached reports whether an open ticket is waiting past its
// first-response target (recorded or not yet: the job may be off).
func breached(t *store.Ticket, tg *Targets, now time.Time) bool {
	if t.CreatorType != store.CreatorCustomer || t.FirstAgentResponse() != nil {
		return false
	}
	if fr := t.FirstResponse; fr != nil && fr.RespondedAt != nil {
		return false
	}
	return (t.FirstResponse != nil && t.FirstResponse.BreachedAt != nil) || !now.Before(tg.Due(t))
}

// ago says how long ago in words: "3 days ago", "5 hours ago".
func ago(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
	case d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours ago"
	case d >= 2*time.Minute:
		return strconv.Itoa(int(d/time.Minute)) + " minutes ago"
	}
	return "just now"
}
