package directory

import (
	"context"

	"github.com/clowdr/realtime/plugins/sdk"
)

// managementModeDM is the management mode of a direct-message room: a chat
// whose first room has it names the sender in its notifications (§6.2).
const managementModeDM = "DM"

// ChatDetails describes a chat for its notifications (§6.2), from the same
// cached ChatInfo the permission checks load (refetched once when not
// found): the conference's slug and short name, the first item's title (its
// short title when the title is empty), else the first room's name, and
// whether the first room is a DM.
func (h *Hasura) ChatDetails(ctx context.Context, chatID string) (sdk.ChatDetails, bool, error) {
	if !validUUID(chatID) {
		return sdk.ChatDetails{}, false, nil
	}
	ci, _, err := h.getChat(ctx, chatID)
	if err != nil || ci == nil {
		return sdk.ChatDetails{}, false, err
	}
	return ci.details(), true, nil
}

// details is ChatDetails of a loaded chat. The original used items[0].title
// even when empty; falling back to the short title and then the room name
// only changes what an untitled item showed ("in ").
func (ci *chatInfo) details() sdk.ChatDetails {
	d := sdk.ChatDetails{ConferenceSlug: ci.Conference.Slug, ConferenceShortName: ci.Conference.ShortName}
	if len(ci.Items) > 0 {
		d.Title = ci.Items[0].Title
		if d.Title == "" {
			d.Title = ci.Items[0].ShortTitle
		}
	}
	if len(ci.Rooms) > 0 {
		if d.Title == "" {
			d.Title = ci.Rooms[0].Name
		}
		d.IsDM = ci.Rooms[0].ManagementMode == managementModeDM
	}
	return d
}

// ChatDetails of the static directory, which knows no chats: never found,
// so notifications keep the text built from the sender ("from <name>",
// linked through the sender's conference) rather than a made-up
// "in Unknown chat" for every chat of a dev run.
func (d *Static) ChatDetails(context.Context, string) (sdk.ChatDetails, bool, error) {
	return sdk.ChatDetails{}, false, nil
}
