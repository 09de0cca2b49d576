package slackout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Bounds on what one event puts into a thread.
const (
	maxBodyChunks   = 10 // section blocks of a response's text (30,000 characters)
	maxRepliesPages = 10 // pages of 200 thread replies searched on a retry
	maxFilesPerPost = 10 // files shared by one files.completeUploadExternal
)

// Reactions on an agent's Slack reply, once the email sink reports (or,
// for a ticket answered in the customer's Slack thread, this sink).
const (
	ReactionDelivered        = "email"
	ReactionDeliveredInSlack = "speech_balloon"
	ReactionUndelivered      = "warning"
)

// deliverResponse posts a response into the thread, with its files, unless
// it was written in this thread (an agent's Slack reply: it is there).
func (a *Adapter) deliverResponse(ctx context.Context, t *store.Ticket, root message, e store.Event, retried bool) error {
	r := t.ResponseByID(e.ResponseID)
	if r == nil {
		return notify.Skipped("response not on its ticket")
	}
	if a.inAgentsChannel(r, e) {
		return notify.Skipped("written in the agents' thread")
	}
	var done *posted
	if retried {
		var err error
		if done, err = a.findPosted(ctx, t, root, e.ID); err != nil {
			return err
		}
	}
	uploads, notes := a.sortAttachments(r.Attachments)
	if done == nil {
		head, err := a.responseHead(ctx, r, e)
		if err != nil {
			return err
		}
		blocks := responseBlocks(head, r.Description, notes, a.ticketLink(t))
		if err := a.postInThread(ctx, t, root, e, head, blocks); err != nil {
			return err
		}
		done = &posted{}
	}
	return a.upload(ctx, t, root, uploads, done.files)
}

// inAgentsChannel reports whether a response was written as a message in
// the agents' channel (its SourceKey names it): the thread shows it already.
// A Slack-made agent response without such a key is treated the same way,
// since agents write from the agents' thread.
func (a *Adapter) inAgentsChannel(r *store.Response, e store.Event) bool {
	if ch, _, ok := slackui.ParseSourceKey(r.SourceKey); ok {
		return ch == a.o.Channel
	}
	fromSlack := r.Source == store.SourceSlack || e.Origin == store.SourceSlack
	return fromSlack && r.CreatorType == store.CreatorAdmin
}

// responseHead is the line above a response: who wrote it, and how.
func (a *Adapter) responseHead(ctx context.Context, r *store.Response, e store.Event) (string, error) {
	who, err := a.personLabel(ctx, r.CreatorType, r.CreatorID)
	if err != nil {
		return "", err
	}
	via := viaLabel(r.Source)
	if via == "" {
		via = viaLabel(e.Origin)
	}
	switch {
	case r.Internal:
		return strings.TrimSpace(":lock: *Internal note* by " + who + " " + via), nil
	case r.CreatorType == store.CreatorAdmin:
		return strings.TrimSpace(who + " (agent) replied to the customer " + via), nil
	}
	return strings.TrimSpace(who + " (customer) wrote " + via), nil
}

// responseBlocks lays a response out: its head line, its text in sections,
// and notes about files that are not uploaded.
func responseBlocks(head, text string, notes []string, link string) []slack.Block {
	mk := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	blocks := []slack.Block{slack.NewContextBlock("", mk(head))}
	chunks, cut := slackui.Chunks(strings.TrimSpace(text), slackui.MaxSectionText, maxBodyChunks)
	for _, c := range chunks {
		blocks = append(blocks, slack.NewSectionBlock(mk(c), nil, nil))
	}
	if cut {
		notes = append(notes, "The text was cut; the whole of it is in the API"+link+".")
	}
	if len(notes) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(mk(slackui.Plain(strings.Join(notes, "\n"), slackui.MaxSectionText)), nil, nil))
	}
	return blocks
}

// ticketLink is " (<url|ticket id>)", or the id alone without an API URL.
func (a *Adapter) ticketLink(t *store.Ticket) string {
	if a.o.APIBaseURL == "" {
		return " (ticket `" + t.ID.Hex() + "`)"
	}
	return " (<" + a.o.APIBaseURL + "/api/ticket/admin-fetch-one?id=" + t.ID.Hex() + "|ticket " + t.ID.Hex() + ">)"
}

// sortAttachments splits a response's files into those to upload and notes
// for the rest (too large, or empty).
func (a *Adapter) sortAttachments(atts []store.Attachment) (uploads []store.Attachment, notes []string) {
	for _, at := range atts {
		switch {
		case at.Size <= 0:
			notes = append(notes, ":paperclip: "+slackui.Mrkdwn(at.Filename, 200)+" is empty.")
		case at.Size > a.o.MaxUploadBytes:
			notes = append(notes, ":paperclip: "+slackui.Mrkdwn(at.Filename, 200)+" ("+byteSize(at.Size)+") is too large to upload here: "+a.attachmentLink(at.ID))
		default:
			uploads = append(uploads, at)
		}
	}
	return uploads, notes
}

func (a *Adapter) attachmentLink(id bson.ObjectID) string {
	if a.o.APIBaseURL == "" {
		return "attachment `" + id.Hex() + "` in the API"
	}
	return "<" + a.o.APIBaseURL + "/api/ticket/attachment?id=" + id.Hex() + "|download it from the API>"
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " kB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// upload shares files into the thread with the external upload flow
// (files.getUploadURLExternal, a POST of the bytes, then
// files.completeUploadExternal with thread_ts), skipping names already
// shared after the event's message.
func (a *Adapter) upload(ctx context.Context, t *store.Ticket, root message, files []store.Attachment, already []string) error {
	var batch []slack.FileSummary
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := a.api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{
			Files: batch, Channel: root.channel, ThreadTimestamp: root.ts,
		})
		batch = batch[:0]
		if err != nil {
			return classify("share files in the thread", err)
		}
		return nil
	}
	for _, at := range files {
		if i := slices.Index(already, at.Filename); i >= 0 {
			already = slices.Delete(already, i, i+1)
			continue
		}
		f, err := a.st.Attachment(ctx, at.ID, store.AllTickets)
		if errors.Is(err, store.ErrNotFound) {
			a.log.Warn("attachment bytes missing; not uploaded", "ticket", t.ID.Hex(), "attachment", at.ID.Hex())
			continue
		}
		if err != nil {
			return fmt.Errorf("slack: load attachment %s: %w", at.ID.Hex(), err)
		}
		if len(f.Data) == 0 {
			continue
		}
		name := uploadName(f.Filename)
		u, err := a.api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: name, FileSize: len(f.Data)})
		if err != nil {
			return classify("get an upload URL", err)
		}
		if err := a.api.UploadToURL(ctx, slack.UploadToURLParameters{UploadURL: u.UploadURL, Reader: bytes.NewReader(f.Data), Filename: name}); err != nil {
			return classify("upload a file", err)
		}
		batch = append(batch, slack.FileSummary{ID: u.FileID, Title: name})
		if len(batch) == maxFilesPerPost {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// uploadName is the filename Slack gets: never empty.
func uploadName(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return "attachment"
	}
	return name
}

// postLine posts one context line into the thread for an event, once.
func (a *Adapter) postLine(ctx context.Context, t *store.Ticket, root message, e store.Event, retried bool, line string) error {
	if retried {
		done, err := a.findPosted(ctx, t, root, e.ID)
		if err != nil || done != nil {
			return err
		}
	}
	block := slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, slackui.Plain(line, slackui.MaxFieldText), false, false))
	return a.postInThread(ctx, t, root, e, line, []slack.Block{block})
}

// postInThread posts a message into the ticket's thread, with the metadata
// that lets a retry find it.
func (a *Adapter) postInThread(ctx context.Context, t *store.Ticket, root message, e store.Event, text string, blocks []slack.Block) error {
	_, _, err := a.api.PostMessageContext(ctx, root.channel,
		slack.MsgOptionTS(root.ts),
		slack.MsgOptionText(slackui.Plain(text, slackui.MaxSectionText), false),
		slack.MsgOptionBlocks(blocks...),
		slack.MsgOptionMetadata(slackui.Metadata(t.ID, e.ID)))
	if err != nil {
		return classify("post in the ticket's thread", err)
	}
	return nil
}

// posted is what an earlier attempt of an event left in the thread: its
// message, and the names of files shared after it by the bot.
type posted struct {
	files []string
}

// findPosted searches the thread for the message an earlier attempt posted
// for the event; nil when there is none.
func (a *Adapter) findPosted(ctx context.Context, t *store.Ticket, root message, event bson.ObjectID) (*posted, error) {
	p := &slack.GetConversationRepliesParameters{
		ChannelID: root.channel, Timestamp: root.ts, Limit: historyPageSize, IncludeAllMetadata: true,
	}
	var found *posted
	for page := 0; page < maxRepliesPages; page++ {
		msgs, more, cursor, err := a.api.GetConversationRepliesContext(ctx, p)
		if err != nil {
			return nil, classify("search the ticket's thread", err)
		}
		for _, m := range msgs {
			switch {
			case m.Timestamp == root.ts:
			case found == nil:
				if a.ours(m, t.ID.Hex(), event.Hex()) {
					found = &posted{}
				}
			case a.ours(m, t.ID.Hex(), ""):
				return found, nil // the next event's message: its files are its own
			case len(m.Files) > 0 && a.byBot(m):
				for _, f := range m.Files {
					found.files = append(found.files, f.Name)
				}
			}
		}
		if !more || cursor == "" {
			break
		}
		p.Cursor = cursor
	}
	return found, nil
}

// changeLine is the thread line of a status, priority or assignee change.
func (a *Adapter) changeLine(ctx context.Context, e store.Event) (string, error) {
	who, err := a.personLabel(ctx, e.ActorType, e.ActorID)
	if err != nil {
		return "", err
	}
	var line string
	switch e.Kind {
	case store.EventAssigneeChanged:
		line = "Unassigned by " + who
		if id, err := bson.ObjectIDFromHex(e.To); err == nil {
			to, err := a.personLabel(ctx, store.CreatorAdmin, id)
			if err != nil {
				return "", err
			}
			line = "Assigned to " + to + " by " + who
		}
	case store.EventPriorityChanged:
		line = fmt.Sprintf("Priority changed from *%s* to *%s* by %s", slackui.Mrkdwn(e.From, 50), slackui.Mrkdwn(e.To, 50), who)
	default:
		line = fmt.Sprintf("Status changed from *%s* to *%s* by %s", slackui.Mrkdwn(e.From, 50), slackui.Mrkdwn(e.To, 50), who)
	}
	if via := viaLabel(e.Origin); via != "" {
		line += " " + via
	}
	return line, nil
}

// deliverOutcome shows what became of a response the email sink mailed (or
// gave up on): a reaction on the agent's Slack message, and for a failure a
// thread line saying that the customer did not get it, and why.
func (a *Adapter) deliverOutcome(ctx context.Context, t *store.Ticket, root message, e store.Event, retried bool) error {
	reaction, where := ReactionDelivered, ""
	switch {
	case e.Origin == store.SourceEmail || e.Origin == "":
	case e.Origin == store.SourceSlack && t.Thread(store.ThreadSlackCustomer) != "":
		// This sink's own outcome tells the agent whether the customer got
		// the reply in their Slack thread.
		reaction, where = ReactionDeliveredInSlack, " in their Slack thread"
	default:
		// Only what reaches the customer is reported on the agent's
		// message; other sinks' outcomes (Slack's own, for a ticket
		// answered by mail) are not.
		return notify.Skipped("outcome of the " + string(e.Origin) + " sink")
	}
	r := t.ResponseByID(e.ResponseID)
	if r == nil {
		return notify.Skipped("response not on its ticket")
	}
	ch, ts, fromSlack := slackui.ParseSourceKey(r.SourceKey)
	// Reactions go on agents' messages in the agents' channel only; the
	// customer reads the others.
	fromSlack = fromSlack && ch == a.o.Channel
	if e.Kind == store.EventResponseUndelivered {
		reaction = ReactionUndelivered
	}
	if fromSlack {
		if err := a.react(ctx, reaction, message{channel: ch, ts: ts}); err != nil {
			return err
		}
	}
	switch {
	case e.Kind == store.EventResponseUndelivered:
	case fromSlack:
		return nil
	default:
		return notify.Skipped("a delivered reply not written in Slack has nothing to mark")
	}
	who, err := a.personLabel(ctx, r.CreatorType, r.CreatorID)
	if err != nil {
		return err
	}
	which := "The reply by " + who + " of " + r.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")
	if fromSlack {
		which = "The reply by " + who + " marked :" + ReactionUndelivered + ":"
	}
	reason := strings.TrimSpace(e.Note)
	if reason == "" {
		reason = "no reason given"
	}
	line := ":warning: " + which + " did not reach the customer" + where + ": " + slackui.Mrkdwn(reason, 1000)
	return a.postLine(ctx, t, root, e, retried, line)
}

// react adds a reaction; one already there counts as done, and so does a
// message that is gone (nothing is left to mark).
func (a *Adapter) react(ctx context.Context, name string, m message) error {
	err := a.api.AddReactionContext(ctx, name, slack.NewRefToMessage(m.channel, m.ts))
	switch slackErr(err) {
	case "":
		if err != nil {
			return classify("add reaction "+name, err)
		}
		return nil
	case "already_reacted":
		return nil
	case "message_not_found", "no_item_specified":
		a.log.Info("message to react on is gone", "channel", m.channel, "ts", m.ts, "reaction", name)
		return nil
	}
	return classify("add reaction "+name, err)
}

// personLabel names whoever made a change, in bold.
func (a *Adapter) personLabel(ctx context.Context, typ store.CreatorType, id bson.ObjectID) (string, error) {
	ag, c, err := a.who(ctx, typ, id)
	switch {
	case err != nil:
		return "", err
	case ag != nil:
		return "*" + slackui.AgentLabel(ag.Name, ag.Email, ag.SlackUserID) + "*", nil
	case c != nil && strings.TrimSpace(c.Name) != "":
		return "*" + slackui.Mrkdwn(c.Name, 200) + "*", nil
	case c != nil:
		return "*" + slackui.Mrkdwn(c.Email, 320) + "*", nil
	case typ == store.CreatorAdmin:
		return "an agent", nil
	case typ == store.CreatorCustomer:
		return "the customer", nil
	}
	return "ticketd", nil
}

// who loads the agent or the customer an id names, by its type; both nil
// for the daemon itself or someone no longer stored.
func (a *Adapter) who(ctx context.Context, typ store.CreatorType, id bson.ObjectID) (*store.Agent, *store.Customer, error) {
	var ag *store.Agent
	var c *store.Customer
	var err error
	switch typ {
	case store.CreatorAdmin:
		ag, err = a.st.Agent(ctx, id)
	case store.CreatorCustomer:
		c, err = a.st.Customer(ctx, id)
	default:
		return nil, nil, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("slack: load %s %s: %w", typ, id.Hex(), err)
	}
	return ag, c, nil
}

// viaLabel says through which channel a change came.
func viaLabel(s store.Source) string {
	switch s {
	case store.SourceAPI:
		return "via API"
	case store.SourceEmail:
		return "via email"
	case store.SourceSlack:
		return "via Slack"
	}
	return ""
}
