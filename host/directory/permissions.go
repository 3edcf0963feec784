package directory

import (
	"context"
	"slices"

	"github.com/clowdr/realtime/plugins/sdk"
)

// ConferenceSlugs lists the conferences the user may view (§2.5 step 4).
func (h *Hasura) ConferenceSlugs(ctx context.Context, userID string) ([]string, error) {
	if !validUser(userID) {
		return nil, nil
	}
	r, err := h.conferenceSlugs(ctx, userID)
	if err != nil {
		return nil, err
	}
	var slugs []string
	if err := decode(r, &slugs); err != nil {
		return nil, err
	}
	return slugs, nil
}

// hasPermission reports whether the user holds one of wanted for slug, which
// must be among the socket's connect-time conferences. A negative answer from
// the cache is checked once more against Hasura (rate-limited), as the
// original.
func (h *Hasura) hasPermission(ctx context.Context, s sdk.Socket, slug string, wanted []string) (bool, error) {
	if slug == "" || !s.HasConference(slug) {
		return false, nil
	}
	check := func(force bool) (bool, bool, error) {
		perms, fresh, err := h.userPermissions(ctx, s.UserID, force)
		if err != nil {
			return false, false, err
		}
		return slices.ContainsFunc(perms, func(p userPermission) bool {
			return p.Slug == slug && slices.Contains(wanted, p.PermissionName)
		}), fresh, nil
	}
	return retryOnce(check)
}

// retryOnce runs check from the cache and, when the answer is negative and
// did not just come from the source, once more forcing a refetch.
func retryOnce(check func(force bool) (ok, fresh bool, err error)) (bool, error) {
	ok, fresh, err := check(false)
	if err != nil || ok || fresh {
		return ok, err
	}
	ok, _, err = check(true)
	return ok, err
}

// getChat loads a chat, refetching once when it is not found (a chat created
// after its "not found" was cached).
func (h *Hasura) getChat(ctx context.Context, chatID string) (*chatInfo, bool, error) {
	ci, fresh, err := h.chatInfo(ctx, chatID, false)
	if err == nil && ci == nil && !fresh {
		ci, fresh, err = h.chatInfo(ctx, chatID, true)
	}
	return ci, fresh, err
}

// canChat is §7.2 with the given permission set: the chat's conference must be
// one of the socket's and the user must hold one of wanted there; then a chat
// without rooms or with a PUBLIC room is open, else the user must be a person
// of one of its rooms (refetched once).
func (h *Hasura) canChat(ctx context.Context, s sdk.Socket, ci *chatInfo, fresh bool, chatID string, wanted []string) (bool, error) {
	ok, err := h.hasPermission(ctx, s, ci.Conference.Slug, wanted)
	if err != nil || !ok {
		return false, err
	}
	if len(ci.Rooms) == 0 || slices.ContainsFunc(ci.Rooms, func(r roomInfo) bool { return r.ManagementMode == managementModePublic }) {
		return true, nil
	}
	member := func(ci *chatInfo) bool {
		return ci != nil && slices.ContainsFunc(ci.Rooms, func(r roomInfo) bool { return r.hasUser(s.UserID) })
	}
	if member(ci) || fresh {
		return member(ci), nil
	}
	ci, _, err = h.chatInfo(ctx, chatID, true)
	if err != nil {
		return false, err
	}
	return member(ci), nil
}

// CanSelectChat reports whether the user may read the chat (§7.2).
func (h *Hasura) CanSelectChat(ctx context.Context, s sdk.Socket, chatID string) (bool, error) {
	if !validUser(s.UserID) || !validUUID(chatID) {
		return false, nil
	}
	ci, fresh, err := h.getChat(ctx, chatID)
	if err != nil || ci == nil {
		return false, err
	}
	return h.canChat(ctx, s, ci, fresh, chatID, viewerPermissions)
}

// CanWriteChat reports whether the user may insert, update or delete a
// message or reaction whose stored sender is senderRegistrantID (§7.3): the
// viewer permissions suffice for one's own message in a chat that is not
// restricted to admins; anything else needs a moderator permission.
func (h *Hasura) CanWriteChat(ctx context.Context, s sdk.Socket, chatID, senderRegistrantID string) (bool, error) {
	if !validUser(s.UserID) || !validUUID(chatID) {
		return false, nil
	}
	own := false
	if validUUID(senderRegistrantID) {
		ri, fresh, err := h.registrantInfo(ctx, senderRegistrantID, false)
		if err != nil {
			return false, err
		}
		if ri != nil && ri.UserID == "" && !fresh {
			// The registrant may have completed registration since.
			if ri, _, err = h.registrantInfo(ctx, senderRegistrantID, true); err != nil {
				return false, err
			}
		}
		own = ri != nil && ri.UserID != "" && ri.UserID == s.UserID
	}
	ci, fresh, err := h.getChat(ctx, chatID)
	if err != nil || ci == nil {
		return false, err
	}
	wanted := viewerPermissions
	if !own || ci.RestrictToAdmins {
		wanted = moderatorPermissions
	}
	return h.canChat(ctx, s, ci, fresh, chatID, wanted)
}

// Registrant resolves a registrant id (refetched once when not found).
func (h *Hasura) Registrant(ctx context.Context, registrantID string) (sdk.Registrant, bool, error) {
	if !validUUID(registrantID) {
		return sdk.Registrant{}, false, nil
	}
	ri, fresh, err := h.registrantInfo(ctx, registrantID, false)
	if err == nil && ri == nil && !fresh {
		ri, _, err = h.registrantInfo(ctx, registrantID, true)
	}
	if err != nil || ri == nil {
		return sdk.Registrant{}, false, err
	}
	return sdk.Registrant{ID: registrantID, UserID: ri.UserID, DisplayName: ri.DisplayName, ConferenceID: ri.ConferenceID}, true, nil
}

// getEvent loads an event, refetching once when it is not found.
func (h *Hasura) getEvent(ctx context.Context, eventID string) (*eventInfo, bool, error) {
	ei, fresh, err := h.eventInfo(ctx, eventID, false)
	if err == nil && ei == nil && !fresh {
		ei, fresh, err = h.eventInfo(ctx, eventID, true)
	}
	return ei, fresh, err
}

// CanAccessEvent reports whether the user may see the event (§7.4): the
// viewer permissions in the event's conference, and a PUBLIC room or being a
// person of the room (refetched once).
func (h *Hasura) CanAccessEvent(ctx context.Context, s sdk.Socket, eventID string) (bool, error) {
	if !validUser(s.UserID) || !validUUID(eventID) {
		return false, nil
	}
	ei, fresh, err := h.getEvent(ctx, eventID)
	if err != nil || ei == nil {
		return false, err
	}
	ok, err := h.hasPermission(ctx, s, ei.Conference.Slug, viewerPermissions)
	if err != nil || !ok {
		return false, err
	}
	if ei.Room != nil && ei.Room.ManagementMode == managementModePublic {
		return true, nil
	}
	if ei.Room.hasUser(s.UserID) || fresh {
		return ei.Room.hasUser(s.UserID), nil
	}
	ei, _, err = h.eventInfo(ctx, eventID, true)
	if err != nil || ei == nil {
		return false, err
	}
	return ei.Room.hasUser(s.UserID), nil
}

// IsEventChair reports whether the user may accept or reject raised hands:
// the user holds CONFERENCE_MANAGE_SCHEDULE in the event's conference, or is
// one of the event's program people with role CHAIR. (The original had no
// such check.)
func (h *Hasura) IsEventChair(ctx context.Context, s sdk.Socket, eventID string) (bool, error) {
	if !validUser(s.UserID) || !validUUID(eventID) {
		return false, nil
	}
	ei, _, err := h.getEvent(ctx, eventID)
	if err != nil || ei == nil || !s.HasConference(ei.Conference.Slug) {
		return false, err
	}
	ok, err := h.hasPermission(ctx, s, ei.Conference.Slug, []string{permConferenceManageSchedule})
	if err != nil || ok {
		return ok, err
	}
	return retryOnce(func(force bool) (bool, bool, error) {
		chairs, fresh, err := h.eventChairs(ctx, eventID, force)
		return slices.Contains(chairs, s.UserID), fresh, err
	})
}
