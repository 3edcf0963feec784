package directory

// GraphQL documents sent to Hasura. GetUserConferenceSlugs, UserPermissions,
// ChatInfo and EventInfo are the original service's (services/realtime at
// 2e35da37); RegistrantInfo adds conferenceId and EventChairs is ours (the
// hand-raise accept rule). All validate against the Clowdr schema of that
// era (Oct 2021, permission groups and FlatUserPermission). Clowdr's later
// schema (Nov 2021 on: registrant conferenceRole, chat item/room, room
// roomMemberships) has none of FlatUserPermission, Conference.groups,
// Chat.items/rooms or Room.roomPeople, so the first four fail there; moving
// to it changes the permission model (§7), not just these documents.

// Permission names (permissions_Permission enum).
const (
	permConferenceView              = "CONFERENCE_VIEW"
	permConferenceViewAttendees     = "CONFERENCE_VIEW_ATTENDEES"
	permConferenceManageSchedule    = "CONFERENCE_MANAGE_SCHEDULE"
	permConferenceModerateAttendees = "CONFERENCE_MODERATE_ATTENDEES"
	permConferenceManageAttendees   = "CONFERENCE_MANAGE_ATTENDEES"
)

// Room management mode of a room anyone in the conference may enter.
const managementModePublic = "PUBLIC"

var (
	// viewerPermissions allow reading chats and events (§7.2, §7.4) and
	// writing one's own messages (§7.3).
	viewerPermissions = []string{
		permConferenceViewAttendees, permConferenceManageSchedule,
		permConferenceModerateAttendees, permConferenceManageAttendees,
	}
	// moderatorPermissions allow writing others' messages, messages without a
	// sender and messages in restrictToAdmins chats (§7.3).
	moderatorPermissions = []string{
		permConferenceManageSchedule, permConferenceModerateAttendees, permConferenceManageAttendees,
	}
)

// queryConferenceSlugs: conferences with an enabled group whose roles include
// CONFERENCE_VIEW and which either includes unauthenticated users or has a
// registrant of the user (§2.5 step 4).
const queryConferenceSlugs = `query GetUserConferenceSlugs($userId: String!) {
  conference_Conference(
    where: {
      groups: {
        enabled: { _eq: true }
        groupRoles: { role: { rolePermissions: { permissionName: { _eq: CONFERENCE_VIEW } } } }
        _or: [
          { includeUnauthenticated: { _eq: true } }
          { groupRegistrants: { registrant: { userId: { _eq: $userId } } } }
        ]
      }
    }
  ) {
    id
    slug
  }
}`

// queryUserPermissions: the user's permissions per conference slug (§7.1).
const queryUserPermissions = `query UserPermissions($userId: String!) {
  FlatUserPermission(where: { user_id: { _eq: $userId } }) {
    slug
    permission_name
    user_id
  }
}`

// queryChatInfo: a chat's conference, items and rooms with their people (§7.1).
const queryChatInfo = `query ChatInfo($chatId: uuid!) {
  chat_Chat_by_pk(id: $chatId) {
    id
    restrictToAdmins
    conference { id slug shortName }
    items { id title shortTitle }
    rooms {
      id
      name
      managementModeName
      roomPeople { id registrant { id userId } }
    }
  }
}`

// queryRegistrantInfo: a registrant's user and display name (§7.1).
const queryRegistrantInfo = `query RegistrantInfo($registrantId: uuid!) {
  registrant_Registrant_by_pk(id: $registrantId) {
    id
    userId
    displayName
    conferenceId
  }
}`

// queryEventInfo: an event's conference and room with its people (§7.1, §7.4).
const queryEventInfo = `query EventInfo($eventId: uuid!) {
  schedule_Event_by_pk(id: $eventId) {
    id
    conference { id slug shortName }
    room {
      id
      name
      managementModeName
      roomPeople { id registrant { id userId } }
    }
  }
}`

// queryEventChairs: the users who chair an event (its program people with role
// CHAIR and a registrant).
const queryEventChairs = `query EventChairs($eventId: uuid!) {
  schedule_EventProgramPerson(where: { eventId: { _eq: $eventId }, roleName: { _eq: CHAIR } }, limit: 1000) {
    id
    person { id registrant { id userId } }
  }
}`
