package chat

// Redis keys and rooms (see the table in doc.go).

func chatRoom(chatID string) string         { return "chat:chat." + chatID }
func listenersKey(chatID string) string     { return "chat:chat." + chatID + ".listeners" }
func socketChatsKey(socketID string) string { return "chat:socket." + socketID + ".chats" }
func listenerMember(socketID, userID string) string {
	return socketID + "¬" + userID
}
func recentMessagesKey(chatID string) string { return "chat:chat." + chatID + ".recentMessages" }
func pinsKey(chatID string) string           { return "chat:pins." + chatID }
func subscriptionsKey(chatID string) string  { return "chat:subscriptions." + chatID }
func readUpToKey(chatID, userID string) string {
	return "caches:ReadUpToIndex:" + chatID + "¬" + userID
}
func recordKey(k kind, sID string) string {
	if k == kindReaction {
		return "chat:reaction:" + sID
	}
	return "chat:message:" + sID
}
